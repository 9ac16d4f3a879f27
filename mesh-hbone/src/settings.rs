//! HTTP/2 settings shared by the HBONE client and server, sized for bulk
//! tunnels rather than for small HTTP requests.
//!
//! The defaults (64 KiB windows, 16 KiB frames) cap one stream at about one
//! window per round trip; tunnels carry whole TCP connections, so windows
//! are raised to what a fast TCP connection keeps in flight.

/// Initial per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE).
pub const STREAM_WINDOW: u32 = 4 << 20;
/// Initial connection-level receive window (WINDOW_UPDATE on stream 0).
pub const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest DATA frame we accept (SETTINGS_MAX_FRAME_SIZE). HTTP/2 allows
/// 16 KiB ..= 16 MiB - 1; 1 MiB keeps per-frame overhead negligible while
/// bounding the buffer a single frame needs.
pub const MAX_FRAME_SIZE: u32 = 1 << 20;
/// Data h2 queues per stream before asking the writer to wait.
pub const MAX_SEND_BUFFER: usize = 1 << 20;
/// Largest header list (SETTINGS_MAX_HEADER_LIST_SIZE, decoded size) we
/// accept. A CONNECT carries an authority and a few headers (`forwarded`,
/// `traceparent`, `baggage` at most 8 KiB); h2's default of 16 MiB would
/// let one request hold that much memory.
pub const MAX_HEADER_LIST_SIZE: u32 = 32 << 10;
/// Streams the server advertises (SETTINGS_MAX_CONCURRENT_STREAMS): the
/// client's own default per connection. With [`MAX_SEND_BUFFER`] it bounds
/// what one connection can make us buffer for sending (100 MiB), and with
/// [`CONNECTION_WINDOW`] what it can make us buffer received (16 MiB).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Bytes read from the TCP socket at once, under TLS. rustls asks for at
/// most 4 KiB per read while it assembles a record (16 KiB); reading the
/// socket through a buffer this size turns a bulk transfer's several
/// small reads per record into one read per buffer.
pub const SOCKET_READ_BUFFER: usize = 64 << 10;
/// Encrypted bytes rustls may hold for sending before a write waits for
/// the socket: the h2 writer hands over a whole DATA frame, which is
/// encrypted and written in pieces this size (rustls' default: 64 KiB).
pub const TLS_SEND_BUFFER: usize = 256 << 10;
/// Streams a client may open and reset before we accept them (the "rapid
/// reset" attack), per connection.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// The client's stream limit is the server's SETTINGS_MAX_CONCURRENT_STREAMS
/// (and `ClientOptions::max_streams_per_connection`), not set here.
pub(crate) fn client_builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        // Servers never push; a tunnel has no use for it.
        .enable_push(false);
    b
}

pub(crate) fn server_builder(max_concurrent_streams: u32) -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_concurrent_streams(max_concurrent_streams);
    b
}
