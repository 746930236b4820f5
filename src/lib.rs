//! Redis module entry. (work in progress)
