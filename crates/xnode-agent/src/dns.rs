//! Services by name: a DNS responder for the `xnode` domain, answered from the mesh's
//! live providers, as Consul's DNS interface answers `.consul`. Workloads find a
//! service at `<service>.xnode` (A and AAAA: the providers' addresses) or its port
//! through SRV (`<service>.xnode` or `_<service>._<tcp|udp>.xnode`), whose targets are
//! `<address in hex>.addr.xnode`. A provider failing its probe has already left the
//! mesh's answers, so it leaves these too. TTLs are zero, and the mesh is asked at most
//! every [`FRESH`], one question at a time, so a flood of queries never crowds the
//! mesh node's commands.
//!
//! The answer is a plain function of the query and the providers (table-tested); the
//! server around it is hickory's.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::watch;
use xnode_mesh::node::{Handle, Provider};

/// The domain answered; anything else is refused.
pub const DOMAIN: &str = "xnode.";

/// Records in one answer at most: enough providers to spread load. (A reply too long
/// for UDP is truncated there, and the client asks again over TCP.)
pub const MOST: usize = 16;

/// How long a query waits for the mesh.
const ASK: Duration = Duration::from_secs(1);

/// How long the mesh's answer serves further queries.
pub const FRESH: Duration = Duration::from_millis(250);

/// The largest UDP reply offered to a client that speaks EDNS (the DNS flag day's
/// size, which avoids fragments).
const UDP_PAYLOAD: u16 = 1232;

/// How long a TCP client may stay silent.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// What a query asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asked {
    /// The domain itself, or a name with names beneath it but nothing at it
    /// (`addr.xnode`, `_web.xnode`).
    Empty,
    /// A service, perhaps of one protocol.
    Service {
        name: String,
        protocol: Option<String>,
    },
    /// An address named by `<hex>.addr.xnode`.
    Address(IpAddr),
    /// A name under the domain that means nothing.
    Nothing,
    /// A name outside the domain.
    Outside,
}

fn asked(name: &str) -> Asked {
    let name = name.to_ascii_lowercase();
    let Some(rest) = name.strip_suffix(DOMAIN) else {
        return Asked::Outside;
    };
    if rest.is_empty() {
        return Asked::Empty;
    }
    if !rest.ends_with('.') {
        // `fooxnode.`
        return Asked::Outside;
    }
    let labels: Vec<&str> = rest.trim_end_matches('.').split('.').collect();
    match labels.as_slice() {
        [hex, "addr"] => address(hex).map_or(Asked::Nothing, Asked::Address),
        ["addr"] => Asked::Empty,
        [service] if service.starts_with('_') => Asked::Empty,
        [service, protocol] => match (service.strip_prefix('_'), *protocol) {
            (Some(service), "_tcp" | "_udp") => Asked::Service {
                name: service.to_owned(),
                protocol: Some(protocol[1..].to_owned()),
            },
            _ => Asked::Nothing,
        },
        [service] if !service.starts_with('_') => Asked::Service {
            name: (*service).to_owned(),
            protocol: None,
        },
        _ => Asked::Nothing,
    }
}

/// An address from its hex label: 8 digits for IPv4, 32 for IPv6.
fn address(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        8 => u32::from_str_radix(hex, 16)
            .ok()
            .map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        32 => u128::from_str_radix(hex, 16)
            .ok()
            .map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        _ => None,
    }
}

/// The name of an address: `7f000001.addr.xnode.`.
fn address_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}.addr.{DOMAIN}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032x}.addr.{DOMAIN}", u128::from(v6)),
    }
}

/// Where a provider can be reached: the IP parts of its addresses. Unspecified and
/// link-local ones never; loopback ones only for this node's own services (another
/// node's loopback is the asker's own).
fn reachable(p: &Provider, me: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in &p.addresses {
        let Ok(addr) = a.parse::<libp2p::Multiaddr>() else {
            continue;
        };
        let ip = addr.iter().find_map(|part| match part {
            libp2p::multiaddr::Protocol::Ip4(v4) => Some(IpAddr::V4(v4)),
            libp2p::multiaddr::Protocol::Ip6(v6) => Some(IpAddr::V6(v6)),
            _ => None,
        });
        let link_local = match ip {
            Some(IpAddr::V4(v4)) => v4.is_link_local(),
            Some(IpAddr::V6(v6)) => v6.is_unicast_link_local(),
            None => false,
        };
        if let Some(ip) = ip
            && !ip.is_unspecified()
            && !link_local
            && (!ip.is_loopback() || p.peer_id == me)
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// A reply: its code, answers and additional records.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// NoError, NXDomain (no such service, or none live), Refused (not our domain),
    /// ServFail (the mesh could not be asked).
    pub code: ResponseCode,
    /// The answers.
    pub answers: Vec<Record>,
    /// The addresses of SRV targets.
    pub additionals: Vec<Record>,
}

fn record(name: &Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), 0, data)
}

fn wants(qtype: RecordType, ip: IpAddr) -> bool {
    match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        _ => false,
    }
}

/// Whether answering `name` needs the mesh's providers.
pub fn needs_mesh(name: &Name) -> bool {
    matches!(asked(&name.to_ascii()), Asked::Service { .. })
}

/// Answers `qtype` for `name` from `mesh`: the live providers (of every service) and
/// this node's peer id, or nothing when the mesh could not be asked.
pub fn answer(name: &Name, qtype: RecordType, mesh: Option<(&[Provider], &str)>) -> Reply {
    let mut reply = Reply {
        code: ResponseCode::NoError,
        answers: Vec::new(),
        additionals: Vec::new(),
    };
    match asked(&name.to_ascii()) {
        Asked::Outside => reply.code = ResponseCode::Refused,
        Asked::Nothing => reply.code = ResponseCode::NXDomain,
        Asked::Empty => {}
        Asked::Address(ip) => {
            if wants(qtype, ip) {
                reply.answers.push(record(name, ip));
            }
        }
        Asked::Service {
            name: service,
            protocol,
        } => {
            let Some((providers, me)) = mesh else {
                reply.code = ResponseCode::ServFail;
                return reply;
            };
            let offered: Vec<&Provider> = providers
                .iter()
                .filter(|p| p.service.eq_ignore_ascii_case(&service))
                .filter(|p| protocol.as_ref().is_none_or(|want| *want == p.protocol))
                .collect();
            if offered.is_empty() {
                reply.code = ResponseCode::NXDomain;
                return reply;
            }
            let mut seen = BTreeSet::new();
            for p in offered {
                for ip in reachable(p, me) {
                    if qtype == RecordType::SRV && seen.insert((ip, p.port)) {
                        let Ok(target) = Name::from_ascii(address_name(ip)) else {
                            continue;
                        };
                        let srv = SRV::new(0, 1, p.port, target.clone());
                        reply
                            .answers
                            .push(Record::from_rdata(name.clone(), 0, RData::SRV(srv)));
                        reply.additionals.push(record(&target, ip));
                    } else if wants(qtype, ip) && seen.insert((ip, 0)) {
                        reply.answers.push(record(name, ip));
                    }
                }
            }
            reply.answers.truncate(MOST);
            reply.additionals.truncate(MOST);
        }
    }
    reply
}

/// The mesh's last answer: the providers, and this node's peer id.
struct Answered {
    at: Instant,
    providers: Arc<Vec<Provider>>,
    me: Arc<str>,
}

/// The responder: answers from the mesh node that runs now.
pub struct Responder {
    mesh: watch::Receiver<Option<Handle>>,
    last: tokio::sync::Mutex<Option<Answered>>,
}

impl Responder {
    /// The providers, at most [`FRESH`] old; none when the mesh does not answer.
    async fn providers(&self) -> Option<(Arc<Vec<Provider>>, Arc<str>)> {
        // Held while the mesh is asked: queries wait here, not in its command queue.
        let mut last = self.last.lock().await;
        if let Some(a) = last.as_ref()
            && a.at.elapsed() < FRESH
        {
            return Some((a.providers.clone(), a.me.clone()));
        }
        let handle = self.mesh.borrow().clone()?;
        let providers = tokio::time::timeout(ASK, handle.providers(None))
            .await
            .ok()?
            .ok()?;
        let fresh = Answered {
            at: Instant::now(),
            providers: Arc::new(providers),
            me: handle.peer_id().to_string().into(),
        };
        let out = (fresh.providers.clone(), fresh.me.clone());
        *last = Some(fresh);
        Some(out)
    }
}

#[async_trait::async_trait]
impl RequestHandler for Responder {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let info = match request.request_info() {
            Ok(info) if request.metadata.op_code == OpCode::Query => info,
            Ok(_) => {
                let reply = builder.error_msg(&request.metadata, ResponseCode::NotImp);
                return sent(response.send_response(reply).await, &request.metadata);
            }
            Err(_) => {
                let reply = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return sent(response.send_response(reply).await, &request.metadata);
            }
        };
        // The name as asked, its case kept.
        let name = info.query.original().name().clone();
        let mesh = match needs_mesh(&name) {
            true => self.providers().await,
            false => None,
        };
        let reply = answer(
            &name,
            info.query.query_type(),
            mesh.as_ref().map(|(p, me)| (p.as_slice(), &**me)),
        );
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative =
            matches!(reply.code, ResponseCode::NoError | ResponseCode::NXDomain);
        metadata.response_code = reply.code;
        let mut builder = builder;
        let mut edns = Edns::new();
        if let Some(asked) = &request.edns {
            edns.set_max_payload(asked.max_payload().clamp(512, UDP_PAYLOAD));
            builder.edns(&edns);
        }
        let message = builder.build(metadata, &reply.answers, [], [], &reply.additionals);
        sent(response.send_response(message).await, &request.metadata)
    }
}

/// What was sent, or a failure in its place.
fn sent(
    result: Result<ResponseInfo, hickory_server::net::NetError>,
    request: &Metadata,
) -> ResponseInfo {
    result.unwrap_or_else(|e| {
        tracing::debug!("cannot send a DNS reply: {e}");
        let mut metadata = Metadata::response_from_request(request);
        metadata.response_code = ResponseCode::ServFail;
        hickory_server::proto::op::Header {
            metadata,
            counts: Default::default(),
        }
        .into()
    })
}

/// The sockets the responder answers on, bound before anything else starts, so a
/// taken address stops xnoded with a clear error.
pub struct Sockets {
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
}

/// Binds UDP and TCP at `addr` (port 0: one free port for both).
pub async fn bind(addr: SocketAddr) -> std::io::Result<Sockets> {
    let udp = tokio::net::UdpSocket::bind(addr).await?;
    let tcp = tokio::net::TcpListener::bind(udp.local_addr()?).await?;
    Ok(Sockets { udp, tcp })
}

/// Answers on `sockets` until the process ends, from the node `mesh` holds.
pub async fn serve(sockets: Sockets, mesh: watch::Receiver<Option<Handle>>) {
    let mut server = hickory_server::Server::new(Responder {
        mesh,
        last: tokio::sync::Mutex::new(None),
    });
    server.register_socket(sockets.udp);
    server.register_listener(sockets.tcp, TCP_IDLE, 64);
    if let Err(e) = server.block_until_done().await {
        tracing::error!("the DNS responder stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(service: &str, peer: &str, addresses: &[&str], port: u16) -> Provider {
        Provider {
            service: service.into(),
            node: peer.into(),
            peer_id: peer.into(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            port,
            protocol: "tcp".into(),
        }
    }

    fn providers() -> Vec<Provider> {
        vec![
            provider(
                "web",
                "me",
                &["/ip4/127.0.0.1/tcp/7720", "/ip4/10.0.0.1/tcp/7720"],
                8080,
            ),
            provider(
                "web",
                "other",
                &[
                    "/ip4/127.0.0.1/tcp/7720",
                    "/ip4/0.0.0.0/tcp/7720",
                    "/ip4/169.254.1.1/tcp/7720",
                    "/ip6/fe80::1/tcp/7720",
                    "/ip6/fd00::2/tcp/7720",
                    "/ip4/10.0.0.2/tcp/7720",
                    "/dns4/example.org/tcp/7720",
                    "not a multiaddr",
                ],
                8081,
            ),
            provider("db", "other", &["/ip4/10.0.0.2/tcp/7720"], 5432),
        ]
    }

    fn ask(name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>, Vec<String>) {
        let name = Name::from_ascii(name).unwrap();
        let r = answer(&name, qtype, Some((&providers(), "me")));
        let show = |records: &[Record]| -> Vec<String> {
            records
                .iter()
                .map(|r| format!("{} {}", r.name, r.data))
                .collect()
        };
        (r.code, show(&r.answers), show(&r.additionals))
    }

    #[test]
    fn answers() {
        use RecordType::*;
        use ResponseCode::*;
        let none: Vec<&str> = vec![];
        // (name, type, code, answers, additionals)
        type Row<'a> = (
            &'a str,
            RecordType,
            ResponseCode,
            Vec<&'a str>,
            Vec<&'a str>,
        );
        let table: Vec<Row> = vec![
            (
                "web.xnode.",
                A,
                NoError,
                vec![
                    "web.xnode. 127.0.0.1",
                    "web.xnode. 10.0.0.1",
                    "web.xnode. 10.0.0.2",
                ],
                none.clone(),
            ),
            (
                "WEB.Xnode.",
                AAAA,
                NoError,
                vec!["WEB.Xnode. fd00::2"],
                none.clone(),
            ),
            (
                "_db._tcp.xnode.",
                SRV,
                NoError,
                vec!["_db._tcp.xnode. 0 1 5432 0a000002.addr.xnode."],
                vec!["0a000002.addr.xnode. 10.0.0.2"],
            ),
            ("_db._udp.xnode.", SRV, NXDomain, none.clone(), none.clone()),
            ("db.xnode.", TXT, NoError, none.clone(), none.clone()),
            ("cache.xnode.", A, NXDomain, none.clone(), none.clone()),
            (
                "0a000002.addr.xnode.",
                A,
                NoError,
                vec!["0a000002.addr.xnode. 10.0.0.2"],
                none.clone(),
            ),
            (
                "fd000000000000000000000000000002.addr.xnode.",
                AAAA,
                NoError,
                vec!["fd000000000000000000000000000002.addr.xnode. fd00::2"],
                none.clone(),
            ),
            (
                "0a000002.addr.xnode.",
                AAAA,
                NoError,
                none.clone(),
                none.clone(),
            ),
            (
                "zz000002.addr.xnode.",
                A,
                NXDomain,
                none.clone(),
                none.clone(),
            ),
            ("a.b.web.xnode.", A, NXDomain, none.clone(), none.clone()),
            ("xnode.", A, NoError, none.clone(), none.clone()),
            ("addr.xnode.", A, NoError, none.clone(), none.clone()),
            ("_web.xnode.", SRV, NoError, none.clone(), none.clone()),
            (
                "Db.XNODE.",
                A,
                NoError,
                vec!["Db.XNODE. 10.0.0.2"],
                none.clone(),
            ),
            ("example.org.", A, Refused, none.clone(), none.clone()),
            ("notxnode.", A, Refused, none.clone(), none.clone()),
        ];
        for (name, qtype, code, answers, additionals) in table {
            let got = ask(name, qtype);
            assert_eq!(
                got,
                (code, strings(&answers), strings(&additionals)),
                "{name} {qtype}"
            );
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_service_asked_while_the_mesh_does_not_answer_is_a_server_failure() {
        let name = |n: &str| Name::from_ascii(n).unwrap();
        let r = answer(&name("web.xnode."), RecordType::A, None);
        assert_eq!(r.code, ResponseCode::ServFail);
        // Names that need no mesh are answered all the same.
        let r = answer(&name("0a000002.addr.xnode."), RecordType::A, None);
        assert_eq!((r.code, r.answers.len()), (ResponseCode::NoError, 1));
        assert!(!needs_mesh(&name("example.org.")));
        assert!(needs_mesh(&name("_web._tcp.xnode.")));
    }

    #[test]
    fn srv_names_each_provider_and_its_port() {
        let (code, answers, additionals) = ask("web.xnode.", RecordType::SRV);
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(
            answers,
            strings(&[
                "web.xnode. 0 1 8080 7f000001.addr.xnode.",
                "web.xnode. 0 1 8080 0a000001.addr.xnode.",
                "web.xnode. 0 1 8081 fd000000000000000000000000000002.addr.xnode.",
                "web.xnode. 0 1 8081 0a000002.addr.xnode.",
            ])
        );
        assert_eq!(additionals.len(), 4);
    }

    #[test]
    fn many_providers_are_cut_to_sixteen_records() {
        let many: Vec<Provider> = (0..100)
            .map(|i| {
                provider(
                    "web",
                    &format!("p{i}"),
                    &[&format!("/ip4/10.0.1.{i}/tcp/1")],
                    80,
                )
            })
            .collect();
        let name = Name::from_ascii("web.xnode.").unwrap();
        let r = answer(&name, RecordType::SRV, Some((&many, "me")));
        assert_eq!((r.answers.len(), r.additionals.len()), (MOST, MOST));
    }

    #[tokio::test]
    async fn real_queries_over_udp_and_tcp_get_replies() {
        let sockets = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = sockets.udp.local_addr().unwrap();
        // No mesh: a service cannot be answered, an address can.
        let (_tx, mesh) = watch::channel(None);
        tokio::spawn(serve(sockets, mesh));
        let query = |name: &str| {
            let mut q = hickory_server::proto::op::Message::query();
            q.add_query(hickory_server::proto::op::Query::query(
                Name::from_ascii(name).unwrap(),
                RecordType::A,
            ));
            q
        };
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for (name, code, answers) in [
            ("web.xnode.", ResponseCode::ServFail, 0),
            ("7F000001.Addr.xnode.", ResponseCode::NoError, 1),
            ("example.org.", ResponseCode::Refused, 0),
        ] {
            let q = query(name);
            udp.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let reply = hickory_server::proto::op::Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(reply.metadata.id, q.metadata.id, "{name}");
            assert_eq!(reply.metadata.response_code, code, "{name}");
            assert_eq!(reply.answers.len(), answers, "{name}");
        }
        // Over TCP: a two-byte length, then the message.
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let bytes = query("0a000002.addr.xnode.").to_vec().unwrap();
        tcp.write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        tcp.write_all(&bytes).await.unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        tcp.read_exact(&mut buf).await.unwrap();
        let reply = hickory_server::proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!(reply.answers.len(), 1);
    }
}
