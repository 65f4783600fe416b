//! A bump arena for the records of a `map-buffer` call, in front of the standard
//! allocator.
//!
//! Reading a batch into [`crate::Record`]s allocates every id, name and value, and the
//! mapper's results free them again: with the standard allocator (dlmalloc) that was most
//! of the guest's work, several hundred wasm instructions per string. Every call runs in
//! a fresh instance (plugins/README.md §7), so memory the call took need not be reused:
//! while the arena has room, an allocation is a pointer bump and a free does nothing
//! (except for the newest block, which is given back, so that a growing `Vec` or `String`
//! at the top grows in place). What does not fit goes to the standard allocator, so the
//! arena costs at most its own size in memory: [`reserve`] sizes it from the input.
//!
//! Installed by [`crate::export_mapper!`] as the mapper's global allocator; until
//! [`reserve`] is called (only `map-buffer` calls it) every request goes straight to the
//! standard allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// The arena's bounds: `start..end`, of which `start..top` is handed out. Atomics only
/// for `Sync`: a component is single-threaded, and on wasm32 they are plain loads and
/// stores.
pub struct Arena {
    start: AtomicUsize,
    top: AtomicUsize,
    end: AtomicUsize,
}

impl Arena {
    /// An arena without memory: every request goes to the standard allocator.
    pub const fn new() -> Self {
        Arena {
            start: AtomicUsize::new(0),
            top: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
        }
    }

    /// Takes `size` bytes from the standard allocator for the arena, once: a later call
    /// keeps the arena it has (blocks handed out must stay recognisable as the arena's).
    /// When the standard allocator cannot spare them, there is no arena.
    pub fn reserve(&self, size: usize) {
        if self.end.load(Relaxed) != 0 || size == 0 {
            return;
        }
        let Ok(layout) = Layout::from_size_align(size, 16) else {
            return;
        };
        // SAFETY: `layout` has a non-zero size. The block is never freed: it holds the
        // arena's allocations for the rest of the instance's life.
        let block = unsafe { System.alloc(layout) } as usize;
        if block == 0 {
            return;
        }
        self.start.store(block, Relaxed);
        self.top.store(block, Relaxed);
        self.end.store(block + size, Relaxed);
    }

    #[inline]
    fn owns(&self, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= self.start.load(Relaxed) && p < self.end.load(Relaxed)
    }

    /// Bytes handed out so far.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.top.load(Relaxed) - self.start.load(Relaxed)
    }

    #[inline]
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let top = self.top.load(Relaxed);
        let p = top.checked_add(layout.align() - 1)? & !(layout.align() - 1);
        let new_top = p.checked_add(layout.size())?;
        if new_top > self.end.load(Relaxed) {
            return None;
        }
        self.top.store(new_top, Relaxed);
        Some(p as *mut u8)
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks come from the arena's reserved range, aligned and sized as asked, each
// handed out once (the top only moves back over the newest block when it is freed), or
// from `System`; each is returned to where it came from (`owns`).
unsafe impl GlobalAlloc for Arena {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(p) => p,
            // SAFETY: forwarded as is.
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            if ptr as usize + layout.size() == self.top.load(Relaxed) {
                self.top.store(ptr as usize, Relaxed);
            }
        } else {
            // SAFETY: not the arena's, so `System`'s, with the layout it was given.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: not the arena's, so `System`'s.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let p = ptr as usize;
        // The newest block grows or shrinks in place; any block shrinks in place.
        if p + layout.size() == self.top.load(Relaxed)
            && let Some(new_top) = p.checked_add(new_size)
            && new_top <= self.end.load(Relaxed)
        {
            self.top.store(new_top, Relaxed);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `realloc`'s contract makes this layout valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (larger than the old one).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are at least `layout.size()` long and distinct.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// The arena of this component (the global allocator that `export_mapper!` installs).
pub static ARENA: Arena = Arena::new();

/// Whether [`ArenaAllocator`] is the global allocator (it has served a request). Without
/// it, an arena would only take memory: [`reserve`] then does nothing.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Reserves the component's arena (see [`Arena::reserve`]) when the SDK's allocator is
/// the global one.
pub fn reserve(size: usize) {
    if INSTALLED.load(Relaxed) {
        ARENA.reserve(size);
    }
}

/// A copy of a text in the arena, whose parts become `String`s without a copy (and an
/// allocation) each: what building a batch's records costs is then one copy of its text.
///
/// Sound because the arena hands out blocks by bumping: carving the copy's disjoint
/// parts, with the alignment of `String` (one), gives the blocks that allocating each
/// part in turn would have given, and freeing or growing one of them is what it would be
/// for such a block (the newest given back, the others left in place or moved). Bytes
/// between carved parts are as a block never freed.
pub(crate) struct TextCopy<'a> {
    /// The text copied.
    origin: &'a str,
    base: *mut u8,
}

/// Copies `text` into the arena for carving; `None` when the arena is not the global
/// allocator or has no room for it (then each part is allocated as usual).
pub(crate) fn copy(text: &str) -> Option<TextCopy<'_>> {
    if !INSTALLED.load(Relaxed) || text.is_empty() {
        return None;
    }
    let base = ARENA.bump(Layout::from_size_align(text.len(), 1).ok()?)?;
    // SAFETY: `base` is a fresh block of `text.len()` bytes, distinct from `text`.
    unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), base, text.len()) };
    Some(TextCopy { origin: text, base })
}

impl TextCopy<'_> {
    /// The copy of `part` as a `String` of its own.
    ///
    /// # Safety
    ///
    /// `part` is a slice of the copied text, and no other `String` carved from this copy
    /// overlaps it (each part carved at most once).
    pub(crate) unsafe fn carve(&self, part: &str) -> String {
        if part.is_empty() {
            return String::new();
        }
        let offset = part.as_ptr() as usize - self.origin.as_ptr() as usize;
        debug_assert!(offset + part.len() <= self.origin.len());
        // SAFETY: the bytes are a copy of `part` (so UTF-8), inside the arena block of
        // the copy, and owned by this `String` alone (the caller's promise); the arena
        // takes them back as a block of `part.len()` bytes with alignment one (above).
        unsafe { String::from_raw_parts(self.base.add(offset), part.len(), part.len()) }
    }
}

/// The global allocator of a mapper: [`ARENA`].
#[doc(hidden)]
pub struct ArenaAllocator;

// SAFETY: forwards to `ARENA`.
unsafe impl GlobalAlloc for ArenaAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Relaxed);
        // SAFETY: forwarded as is.
        unsafe { ARENA.alloc(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { ARENA.dealloc(ptr, layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe { ARENA.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_reuses_the_top_and_overflows_to_the_system_allocator() {
        let arena = Arena::new();
        let small = Layout::from_size_align(10, 1).unwrap();
        // SAFETY: every block is used within its layout and freed with it.
        unsafe {
            // No arena yet: the system's.
            let p = arena.alloc(small);
            assert!(!arena.owns(p));
            arena.dealloc(p, small);

            arena.reserve(64);
            arena.reserve(1 << 20);
            assert_eq!(
                arena.end.load(Relaxed) - arena.start.load(Relaxed),
                64,
                "once"
            );
            let a = arena.alloc(small);
            let b = arena.alloc(Layout::from_size_align(8, 8).unwrap());
            assert!(arena.owns(a) && arena.owns(b));
            assert_eq!(b as usize % 8, 0);
            assert_eq!(arena.used(), b as usize + 8 - arena.start.load(Relaxed));
            // The newest block grows in place, then is given back when freed.
            let b2 = arena.realloc(b, Layout::from_size_align(8, 8).unwrap(), 16);
            assert_eq!(b2, b);
            let used = arena.used();
            arena.dealloc(b2, Layout::from_size_align(16, 8).unwrap());
            assert_eq!(arena.used(), used - 16);
            // An older block grows by moving, keeping its bytes.
            a.write_bytes(7, 10);
            let c = arena.alloc(small);
            let a2 = arena.realloc(a, small, 20);
            assert_ne!(a2, a);
            assert!(arena.owns(a2));
            assert_eq!(std::slice::from_raw_parts(a2, 10), &[7; 10]);
            // Beyond the arena: the system's, freed there.
            let big = Layout::from_size_align(100, 1).unwrap();
            let d = arena.alloc(big);
            assert!(!d.is_null() && !arena.owns(d));
            d.write_bytes(1, 100);
            arena.dealloc(d, big);
            arena.dealloc(c, small);
            arena.dealloc(a2, Layout::from_size_align(20, 1).unwrap());
        }
    }
}
