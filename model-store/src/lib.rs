//! Model download, verification, unpacking, caching and inspection.
