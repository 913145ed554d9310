//! Where the load goes: the target server (loopback only) and the source
//! addresses client sockets are bound to, to get past the ephemeral port
//! range of one source address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Result, bail};
use tokio::net::{TcpSocket, TcpStream};

/// Refuses any target that is not on this machine's loopback.
pub fn check_loopback(addr: &SocketAddr) -> Result<()> {
    if !addr.ip().is_loopback() {
        bail!(
            "refusing to send load to {addr}: only loopback targets (127.0.0.0/8, ::1) are allowed"
        );
    }
    Ok(())
}

/// Source addresses 127.0.0.1 … 127.0.0.N, used in turn.
#[derive(Debug)]
pub struct Sources {
    ips: Vec<IpAddr>,
    next: AtomicUsize,
}

impl Sources {
    pub fn new(count: usize) -> Self {
        let count = count.clamp(1, 254);
        Sources {
            ips: (1..=count)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.ips.len()
    }

    /// A TCP connection to `addr` from the next source address.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let ip = self.ips[self.next.fetch_add(1, Ordering::Relaxed) % self.ips.len()];
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if addr.is_ipv4() {
            defer_port_choice(&socket)?;
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Lets the kernel choose the source port at `connect` rather than at
/// `bind` (`IP_BIND_ADDRESS_NO_PORT`), from the whole 4-tuple: otherwise
/// every port still in TIME_WAIT from an earlier run against another server
/// is unavailable, and after a few peers the port search slows every connect.
fn defer_port_choice(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises the soft limit of open files to the hard limit (children started
/// afterwards inherit it); returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}
