//! Control plane library (issue 3, in progress).
