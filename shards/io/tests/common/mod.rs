//! A local HTTP receiver for the I/O shard tests: std TcpListener in a thread, one request per connection.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One request as the receiver saw it.
#[derive(Debug)]
pub struct Received {
    pub at: Instant,
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }

    pub fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .cloned()
            .expect("events array")
    }
}

/// A receiver answering the n-th request with `statuses[n]` (the last one repeats).
pub struct Receiver {
    pub url: String,
    rx: mpsc::Receiver<Received>,
}

impl Receiver {
    pub fn new(statuses: Vec<u16>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
                let Some(received) = serve(stream, status) else {
                    continue;
                };
                if tx.send(received).is_err() {
                    return;
                }
            }
        });
        Receiver { url, rx }
    }

    pub fn next(&self, within: Duration) -> Option<Received> {
        self.rx.recv_timeout(within).ok()
    }
}

fn serve(stream: std::net::TcpStream, status: u16) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let at = Instant::now();
    let mut stream = stream;
    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(answer.as_bytes());
    Some(Received {
        at,
        request_line: request_line.trim_end().to_string(),
        headers,
        body,
    })
}
