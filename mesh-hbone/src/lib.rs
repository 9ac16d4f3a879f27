//! HBONE client and server (issue 3, in progress).
