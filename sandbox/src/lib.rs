//! Simulated Freshsales, Freshmarketer and Google People accounts.
