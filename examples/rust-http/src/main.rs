//! A tiny HTTP server using only Rust's standard library: kiln's Rust buildpack builds it
//! with `cargo build --release` and the image runs it as the `web` process.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn respond(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    // Read the request line and headers up to the blank line.
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let body = "Hello from Rust, built by kiln!\n";
    let mut stream = &stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let listener = TcpListener::bind(("0.0.0.0", port)).expect("the port is free");
    println!("listening on :{port}");
    for stream in listener.incoming().flatten() {
        if let Err(e) = respond(stream) {
            eprintln!("request failed: {e}");
        }
    }
}
