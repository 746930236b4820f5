//! Pure rate-limit arithmetic. (work in progress)
