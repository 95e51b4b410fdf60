//! Protocol macros: bare identifiers such as `http` or `dns` that test the
//! entry's protocol.

/// A protocol macro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Macro {
    Http,
    Http2,
    Grpc,
    Gql,
    Dns,
    Amqp,
    Kafka,
    Redis,
    Tcp,
    Udp,
    Tls,
}

/// One way a macro can be satisfied: the string at `path` equals one of
/// `names` (ASCII case-insensitively), or, with `names` empty, the value at
/// `path` is `true`.
pub(crate) struct Check {
    pub path: &'static [&'static str],
    pub names: &'static [&'static str],
}

const ABBR: &[&str] = &["protocol", "abbr"];
const NAME: &[&str] = &["protocol", "name"];
const TRANSPORT: &[&str] = &["transport"];
const TLS: &[&str] = &["tls"];

/// Every macro, in the order error messages list them.
pub(crate) const ALL: &[Macro] = &[
    Macro::Http,
    Macro::Http2,
    Macro::Grpc,
    Macro::Gql,
    Macro::Dns,
    Macro::Amqp,
    Macro::Kafka,
    Macro::Redis,
    Macro::Tcp,
    Macro::Udp,
    Macro::Tls,
];

impl Macro {
    pub fn from_name(name: &str) -> Option<Macro> {
        ALL.iter().copied().find(|m| m.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Macro::Http => "http",
            Macro::Http2 => "http2",
            Macro::Grpc => "grpc",
            Macro::Gql => "gql",
            Macro::Dns => "dns",
            Macro::Amqp => "amqp",
            Macro::Kafka => "kafka",
            Macro::Redis => "redis",
            Macro::Tcp => "tcp",
            Macro::Udp => "udp",
            Macro::Tls => "tls",
        }
    }

    /// What the macro tests; it is true when any check is.
    pub fn checks(self) -> &'static [Check] {
        match self {
            Macro::Http => &[Check {
                path: ABBR,
                names: &["HTTP"],
            }],
            Macro::Http2 => &[Check {
                path: ABBR,
                names: &["HTTP/2", "HTTP2"],
            }],
            Macro::Grpc => &[Check {
                path: ABBR,
                names: &["gRPC"],
            }],
            Macro::Gql => &[Check {
                path: ABBR,
                names: &["GQL", "GraphQL"],
            }],
            Macro::Dns => &[Check {
                path: ABBR,
                names: &["DNS"],
            }],
            Macro::Amqp => &[Check {
                path: NAME,
                names: &["amqp"],
            }],
            Macro::Kafka => &[Check {
                path: NAME,
                names: &["kafka"],
            }],
            Macro::Redis => &[Check {
                path: NAME,
                names: &["redis"],
            }],
            Macro::Tcp => &[Check {
                path: TRANSPORT,
                names: &["tcp"],
            }],
            Macro::Udp => &[Check {
                path: TRANSPORT,
                names: &["udp"],
            }],
            Macro::Tls => &[
                Check {
                    path: ABBR,
                    names: &["TLS"],
                },
                Check {
                    path: TLS,
                    names: &[],
                },
            ],
        }
    }
}

/// The macro names, comma-separated, for error messages.
pub(crate) fn names() -> String {
    ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}
