//! The cost floor of any proxy on a machine: a TCP relay that gives each
//! client its own server connection and copies bytes both ways, reading
//! nothing of the protocol (no auth, no pooling, no parsing), on tokio's
//! current-thread runtime. pgbench through it, at as many clients as a
//! pooler's pool size, says how much of direct PostgreSQL's TPS is left once
//! two more loopback hops (two recv and two send per transaction) are paid,
//! which every proxy pays. See docs/benchmarks.md, "The floor: a proxy that
//! does nothing".
//!
//!     relay LISTEN_ADDR SERVER_ADDR

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(server), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: relay LISTEN_ADDR SERVER_ADDR");
        std::process::exit(2);
    };
    let parse = |a: &str| {
        a.parse::<SocketAddr>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{a}: {e}")))
    };
    let (listen, server) = (parse(&listen)?, parse(&server)?);
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?
        .block_on(serve(listen, server))
}

async fn serve(listen: SocketAddr, server: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    loop {
        let mut client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                // Out of descriptors, say: say so and go on, as a proxy would.
                eprintln!("relay: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let mut upstream = match TcpStream::connect(server).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("relay: connect {server}: {e}");
                    return;
                }
            };
            // As both proxies do: a request goes out at once.
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}
