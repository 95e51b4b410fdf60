//! A strict CEF parser for tests (written by a helper; placeholder).
