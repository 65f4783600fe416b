// One ES module for componentize-js: the connector and the SDK bundled, TypeScript
// stripped; the contract's interfaces (`tandem:plugin/...`) stay imports, which
// componentize-js binds to the component's imports.
export default {
  input: 'src/index.ts',
  external: [/^tandem:/],
  output: { file: 'dist/bundle.js', format: 'esm' },
};
