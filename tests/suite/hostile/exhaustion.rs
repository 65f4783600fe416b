//! Hostile plugins: exhaustion.

use super::*;
