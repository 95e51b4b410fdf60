//! KFL: placeholder, being written.
