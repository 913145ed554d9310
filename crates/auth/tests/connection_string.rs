//! Connection string parsing (protocol reference §1) and formatting.

use portcullis_auth::{ConnectionString, ConnectionStringError};

fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
    s.parse()
}

#[test]
fn reference_table_rows() {
    let rows = [
        (
            "Endpoint=http://localhost;Port=8080;AccessKey=abc;Version=1.0;",
            "http://localhost:8080/",
            "abc",
        ),
        (
            "Endpoint=https://x.webpubsub.azure.com;AccessKey=abc;Version=1.0;",
            "https://x.webpubsub.azure.com/",
            "abc",
        ),
        (
            "Endpoint=localhost:9000;AccessKey=k",
            "https://localhost:9000/",
            "k",
        ),
        (
            "Endpoint=http://localhost:8080;AccessKey=k",
            "http://localhost:8080/",
            "k",
        ),
        (
            "Endpoint=http://localhost:8080/;Port=9090;AccessKey=k",
            "http://localhost:9090/",
            "k",
        ),
        ("Endpoint=https://h;Port=443;AccessKey=k", "https://h/", "k"),
    ];
    for (input, endpoint, key) in rows {
        let cs = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(cs.endpoint.as_str(), endpoint, "{input}");
        assert_eq!(cs.access_key, key, "{input}");
    }
}

#[test]
fn keys_are_case_insensitive_and_values_verbatim() {
    let cs = parse("endpoint=http://h;ACCESSKEY=a=b=c==;version=2;port=81").unwrap();
    assert_eq!(cs.endpoint.as_str(), "http://h:81/");
    assert_eq!(cs.access_key, "a=b=c==");
}

#[test]
fn parts_without_equals_and_unknown_keys_are_ignored() {
    let cs = parse(";;garbage;Endpoint=http://h;Foo=bar;AccessKey=k;;").unwrap();
    assert_eq!(cs.endpoint.as_str(), "http://h/");
    assert_eq!(cs.access_key, "k");
}

#[test]
fn later_duplicates_win() {
    let cs = parse("Endpoint=http://a;Endpoint=http://b;AccessKey=1;AccessKey=2").unwrap();
    assert_eq!(cs.endpoint.as_str(), "http://b/");
    assert_eq!(cs.access_key, "2");
}

#[test]
fn endpoint_path_gets_a_trailing_slash() {
    let cs = parse("Endpoint=http://h/base;AccessKey=k").unwrap();
    assert_eq!(cs.endpoint.as_str(), "http://h/base/");
    assert_eq!(
        cs.client_url("chat"),
        "http://h/base/clients/socketio/hubs/chat"
    );
}

#[test]
fn empty_port_clears_the_port() {
    let cs = parse("Endpoint=http://h:8080;Port=;AccessKey=k").unwrap();
    assert_eq!(cs.endpoint.as_str(), "http://h/");
}

#[test]
fn errors() {
    assert_eq!(
        parse("AccessKey=k"),
        Err(ConnectionStringError::MissingEndpoint)
    );
    assert_eq!(
        parse("Endpoint=;AccessKey=k"),
        Err(ConnectionStringError::MissingEndpoint)
    );
    assert_eq!(parse(""), Err(ConnectionStringError::MissingEndpoint));
    assert_eq!(
        parse("Endpoint=http://h"),
        Err(ConnectionStringError::MissingAccessKey)
    );
    assert_eq!(
        parse("Endpoint=http://h;AccessKey="),
        Err(ConnectionStringError::MissingAccessKey)
    );
    assert_eq!(
        parse("Endpoint=http://h;AccessKey=k;Port=abc"),
        Err(ConnectionStringError::InvalidPort)
    );
    assert_eq!(
        parse("Endpoint=http://h;AccessKey=k;Port=70000"),
        Err(ConnectionStringError::InvalidPort)
    );
    assert!(matches!(
        parse("Endpoint=http://;AccessKey=k"),
        Err(ConnectionStringError::InvalidEndpoint(_))
    ));
    assert!(matches!(
        parse("Endpoint=httpx://h;AccessKey=k"),
        Err(ConnectionStringError::UnsupportedScheme(_))
    ));
    assert_eq!(
        ConnectionStringError::MissingEndpoint.to_string(),
        "connection string missing Endpoint"
    );
    assert_eq!(
        ConnectionStringError::MissingAccessKey.to_string(),
        "connection string missing AccessKey"
    );
}

#[test]
fn error_messages_do_not_contain_the_key() {
    let err = parse("Endpoint=http://;AccessKey=topsecret").unwrap_err();
    assert!(!err.to_string().contains("topsecret"));
}

#[test]
fn display_format() {
    let cs = ConnectionString::new(url::Url::parse("http://127.0.0.1:8080").unwrap(), "key");
    assert_eq!(
        cs.to_string(),
        "Endpoint=http://127.0.0.1:8080;AccessKey=key;Version=1.0;"
    );
    let cs = parse("Endpoint=https://h;Port=443;AccessKey=k").unwrap();
    assert_eq!(
        cs.to_string(),
        "Endpoint=https://h;AccessKey=k;Version=1.0;"
    );
}

#[test]
fn display_parse_round_trip() {
    let inputs = [
        "Endpoint=http://localhost;Port=8080;AccessKey=abc;Version=1.0;",
        "Endpoint=https://x.webpubsub.azure.com;AccessKey=abc==;Version=1.0;",
        "Endpoint=localhost:9000;AccessKey=k",
        "Endpoint=http://h/base/path;Port=9090;AccessKey=k",
        "Endpoint=http://[::1]:7000;AccessKey=k",
    ];
    for input in inputs {
        let cs = parse(input).unwrap();
        let again = parse(&cs.to_string()).unwrap();
        assert_eq!(again, cs, "{input} -> {cs}");
    }
}

#[test]
fn new_adds_trailing_slash_and_client_url() {
    let cs = ConnectionString::new(url::Url::parse("http://localhost:18080").unwrap(), "k");
    assert_eq!(cs.endpoint.as_str(), "http://localhost:18080/");
    assert_eq!(
        cs.client_url("eio_hub"),
        "http://localhost:18080/clients/socketio/hubs/eio_hub"
    );
}

#[test]
fn debug_redacts_the_key() {
    let cs = parse("Endpoint=http://h;AccessKey=topsecret").unwrap();
    let text = format!("{cs:?}");
    assert!(!text.contains("topsecret"), "{text}");
    assert!(text.contains("http://h/"), "{text}");
}
