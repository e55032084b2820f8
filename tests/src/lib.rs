//! End-to-end test harness: not built yet (it arrives with the server and client).
