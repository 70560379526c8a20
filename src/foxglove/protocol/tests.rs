//! The wire format against byte and text fixtures written from the spec.

use super::*;

#[test]
fn both_subprotocol_names_are_accepted_and_others_are_not() {
    assert_eq!(
        choose_subprotocol(["foxglove.websocket.v1"]),
        Some(SUBPROTOCOL_WEBSOCKET_V1)
    );
    assert_eq!(
        choose_subprotocol([" foxglove.sdk.v1"]),
        Some(SUBPROTOCOL_SDK_V1)
    );
    // The client's preference wins.
    assert_eq!(
        choose_subprotocol(["x", "foxglove.sdk.v1", "foxglove.websocket.v1"]),
        Some(SUBPROTOCOL_SDK_V1)
    );
    assert_eq!(choose_subprotocol(["foxglove.sdk.v1.1", "v1"]), None);
    assert_eq!(choose_subprotocol([]), None);
}

#[test]
fn a_message_data_frame_is_opcode_subscription_time_and_payload() {
    let f = message_data(0x0102_0304, 0x1122_3344_5566_7788, b"{\"a\":1}");
    assert_eq!(
        f,
        [
            &[0x01, 0x04, 0x03, 0x02, 0x01, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11][..],
            b"{\"a\":1}"
        ]
        .concat()
    );
}

#[test]
fn server_messages_have_the_spec_field_names() {
    let ad = ServerMsg::Advertise {
        channels: vec![ChannelAd {
            id: 3,
            topic: "/robot/r1/battery".into(),
            encoding: "json".into(),
            schema_name: "sensor_msgs/BatteryState".into(),
            schema: "{}".into(),
            schema_encoding: "jsonschema".into(),
        }],
    };
    assert_eq!(
        ad.to_text(),
        r#"{"op":"advertise","channels":[{"id":3,"topic":"/robot/r1/battery","encoding":"json","schemaName":"sensor_msgs/BatteryState","schema":"{}","schemaEncoding":"jsonschema"}]}"#
    );
    let gone = ServerMsg::Unadvertise {
        channel_ids: vec![3, 4],
    };
    assert_eq!(gone.to_text(), r#"{"op":"unadvertise","channelIds":[3,4]}"#);
    let info = ServerMsg::ServerInfo {
        name: "botbus".into(),
        capabilities: vec![],
        supported_encodings: vec![],
        metadata: BTreeMap::new(),
        session_id: "7".into(),
    };
    assert_eq!(
        info.to_text(),
        r#"{"op":"serverInfo","name":"botbus","capabilities":[],"supportedEncodings":[],"metadata":{},"sessionId":"7"}"#
    );
    assert_eq!(
        ServerMsg::warning("slow".into()).to_text(),
        r#"{"op":"status","level":1,"message":"slow"}"#
    );
}

#[test]
fn subscribe_and_unsubscribe_as_the_client_sends_them() {
    let mut s = Subscriptions::default();
    let known = |c: u32| c == 1 || c == 2;
    let errors = s.apply(
        r#"{"op":"subscribe","subscriptions":[{"id":0,"channelId":1},{"id":1,"channelId":2},{"id":2,"channelId":9}]}"#,
        known,
    );
    assert_eq!(errors, [ClientError::NoChannel(9)]);
    assert_eq!(s.of_channel(1).collect::<Vec<_>>(), [0]);
    assert_eq!(
        s.apply(
            r#"{"op":"subscribe","subscriptions":[{"id":0,"channelId":2}]}"#,
            known
        ),
        [ClientError::DuplicateSubscription(0)]
    );
    assert!(s
        .apply(r#"{"op":"unsubscribe","subscriptionIds":[0]}"#, known)
        .is_empty());
    assert_eq!(s.of_channel(1).count(), 0);
    s.forget_channels(&[2]);
    assert_eq!(s.of_channel(2).count(), 0);
    assert_eq!(
        s.apply(r#"{"op":"unsubscribe","subscriptionIds":[1]}"#, known),
        [ClientError::NoSubscription(1)]
    );
}

#[test]
fn requests_it_does_not_take_are_errors_not_crashes() {
    let mut s = Subscriptions::default();
    for text in [
        "",
        "[]",
        r#"{"op":"advertise","channels":[]}"#,
        r#"{"op":"subscribe","subscriptions":[{"id":-1,"channelId":1}]}"#,
        r#"{"op":"subscribe"}"#,
    ] {
        let e = s.apply(text, |_| true);
        assert!(
            matches!(e.as_slice(), [ClientError::Unreadable(_)]),
            "{text}: {e:?}"
        );
    }
}
