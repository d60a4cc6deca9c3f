//! State a client sets is checked before the session takes it: a database the instances
//! do not have, or a client name they refuse, is an error at once, and the session keeps
//! working in the state it had.

use std::time::Duration;

use shardcast_tests::servers::{Proxy, RedisServer};

#[test]
fn a_bad_select_or_client_name_is_refused_and_the_session_goes_on() {
    let server = RedisServer::start();
    let p = Proxy::start(&[&server], "[limits]\nhold_ms = 500");
    let mut c = p.client_within(Duration::from_secs(10));
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("zero")
        .query(&mut c)
        .expect("SET");
    let bad = redis::cmd("SELECT").arg(99).query::<()>(&mut c);
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.to_string().contains("DB index is out of range")),
        "{bad:?}"
    );
    let v: String = redis::cmd("GET")
        .arg("k")
        .query(&mut c)
        .expect("still database 0");
    assert_eq!(v, "zero");
    // The same once the session has connections of its own (database 1).
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).expect("SELECT 1");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("one")
        .query(&mut c)
        .expect("SET");
    assert!(redis::cmd("SELECT").arg(99).query::<()>(&mut c).is_err());
    let v: String = redis::cmd("GET")
        .arg("k")
        .query(&mut c)
        .expect("still database 1");
    assert_eq!(v, "one");

    let bad = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("has space")
        .query::<()>(&mut c);
    assert!(
        bad.as_ref()
            .is_err_and(|e| e.to_string().contains("cannot contain spaces")),
        "{bad:?}"
    );
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("ok-name")
        .query(&mut c)
        .expect("a good name");
    let v: String = redis::cmd("GET").arg("k").query(&mut c).expect("GET");
    assert_eq!(v, "one");
}
