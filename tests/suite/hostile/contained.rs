//! Hostile plugins: contained.

use super::*;
