//! Listeners that count every connection, and servers whose misbehaviour a test writes itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Accepts on `listener` forever, counting each connection in `count` and handing it to `each`
/// on a thread of its own.
fn accept_loop(listener: TcpListener, count: Arc<AtomicUsize>, each: Arc<dyn Fn(TcpStream) + Send + Sync>) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let each = each.clone();
            std::thread::spawn(move || each(stream));
        }
    });
}

/// Listeners on 127.0.0.1 and, where the system has it, [::1], on one port: a refused URL
/// must not get a single connection through to either.
pub struct Trap {
    pub port: u16,
    /// Whether [::1] is bound too.
    pub v6: bool,
    accepts: Arc<AtomicUsize>,
}

impl Trap {
    /// A trap on a free port that both families can bind.
    pub fn new() -> Trap {
        for _ in 0..50 {
            let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = v4.local_addr().unwrap().port();
            if let Some(t) = Trap::with(v4, port) {
                if t.v6 || !ipv6_loopback() {
                    return t;
                }
            }
        }
        panic!("no port free on both 127.0.0.1 and [::1]");
    }

    /// A trap on `port` (say 80 or 6379), or `None` when 127.0.0.1:`port` is taken.
    pub fn on_port(port: u16) -> Option<Trap> {
        Trap::with(TcpListener::bind(("127.0.0.1", port)).ok()?, port)
    }

    fn with(v4: TcpListener, port: u16) -> Option<Trap> {
        let accepts = Arc::new(AtomicUsize::new(0));
        // Answer with a real image so that a connection that got through would also succeed.
        let answer: Arc<dyn Fn(TcpStream) + Send + Sync> = Arc::new(|mut s: TcpStream| {
            let _ = read_request(&mut s);
            let png = super::png(&super::photo(8, 8));
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    png.len()
                )
                .as_bytes(),
            );
            let _ = s.write_all(&png);
        });
        let v6 = TcpListener::bind(("::1", port)).ok();
        let has_v6 = v6.is_some();
        accept_loop(v4, accepts.clone(), answer.clone());
        if let Some(v6) = v6 {
            accept_loop(v6, accepts.clone(), answer);
        }
        Some(Trap { port, v6: has_v6, accepts })
    }

    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// Whether this system can bind [::1].
pub fn ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A server on 127.0.0.1 that hands every accepted connection to `handler`.
pub struct RawServer {
    pub port: u16,
    accepts: Arc<AtomicUsize>,
}

impl RawServer {
    pub fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        accept_loop(listener, accepts.clone(), Arc::new(handler));
        RawServer { port, accepts }
    }

    /// A server that reads each request and then writes `response` verbatim and closes.
    pub fn replying(response: Vec<u8>) -> RawServer {
        RawServer::start(move |mut s| {
            if read_request(&mut s).is_some() {
                let _ = s.write_all(&response);
                let _ = s.flush();
            }
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// Reads a request head (request line and headers) and returns it, or `None` if the peer
/// closed or said nothing for ten seconds.
pub fn read_request(stream: &mut TcpStream) -> Option<String> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) if line == "\r\n" => return Some(head),
            Ok(_) => head.push_str(&line),
        }
    }
}

/// Closes `stream` with a TCP reset (SO_LINGER with a zero timeout) instead of a FIN.
pub fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(stream);
}

/// Drains whatever the peer sends until it closes (keeps a connection open without answering).
pub fn swallow(mut stream: TcpStream, for_at_most: Duration) {
    let _ = stream.set_read_timeout(Some(for_at_most));
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}
