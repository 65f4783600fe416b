//! Hostile plugins: secrets.

use super::*;
