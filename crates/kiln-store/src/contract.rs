//! The store contract suite (filled in with the SQL stores).
