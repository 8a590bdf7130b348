//! Frontend messages built by hand, for tests that must decide exactly
//! which bytes go out and when (a stalled login, a flood, a half exchange).

/// A protocol 3.0 StartupMessage with these parameters.
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(format!("{k}\0{v}\0").as_bytes());
    }
    body.push(0);
    let mut packet = (body.len() as u32 + 4).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// A tagged message: tag, length (counting itself), body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The next backend message from `stream`: (tag, body).
pub async fn read_message<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> (u8, Vec<u8>) {
    try_read_message(stream)
        .await
        .expect("a whole message before the peer closed")
}

/// The next tagged message from `stream` (either direction: tag, length
/// counting itself, body), or None once the peer closed or sent a length
/// below 4.
pub async fn try_read_message<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let tag = stream.read_u8().await.ok()?;
    let len = stream.read_u32().await.ok()? as usize;
    let mut body = vec![0; len.checked_sub(4)?];
    stream.read_exact(&mut body).await.ok()?;
    Some((tag, body))
}
