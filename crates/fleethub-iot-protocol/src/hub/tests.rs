use super::*;

#[test]
fn telemetry_topics() {
    assert_eq!(telemetry_prefix("d", None), "devices/d/messages/events/");
    assert_eq!(
        telemetry_prefix("d", Some("m")),
        "devices/d/modules/m/messages/events/"
    );
    let t = |device_id, module_id, bag| {
        Ok(TelemetryTopic {
            device_id,
            module_id,
            bag,
        })
    };
    assert_eq!(
        parse_telemetry_topic("devices/d1/messages/events/%24.ct=a"),
        t("d1", None, "%24.ct=a")
    );
    assert_eq!(
        parse_telemetry_topic("devices/d1/messages/events/"),
        t("d1", None, "")
    );
    assert_eq!(
        parse_telemetry_topic("devices/d/modules/A/messages/events"),
        t("d", Some("A"), "")
    );
    assert_eq!(
        parse_telemetry_topic("devices/d1/modules/m1/messages/events/%24.on=out1"),
        t("d1", Some("m1"), "%24.on=out1")
    );
    assert!(parse_telemetry_topic("devices/d1/messages/devicebound/").is_err());
    assert!(parse_telemetry_topic("devices/d1/modules/m1/messages/eventsX").is_err());
    assert!(parse_telemetry_topic("$iothub/twin/GET/?$rid=1").is_err());
    assert!(parse_telemetry_topic("other/topic").is_err());
}

#[test]
fn node_trailing_slash_after_the_bag_is_not_data() {
    assert_eq!(
        parse_telemetry_topic("devices/d1/modules/m1/messages/events/%24.on=out1&k=v/"),
        Ok(TelemetryTopic {
            device_id: "d1",
            module_id: Some("m1"),
            bag: "%24.on=out1&k=v"
        })
    );
}

#[test]
fn iothub_requests() {
    assert_eq!(
        parse_iothub_request("$iothub/twin/GET/?$rid=1"),
        Ok(IotHubRequest::TwinGet { rid: "1".into() })
    );
    assert_eq!(
        parse_iothub_request("$iothub/twin/PATCH/properties/reported/?$rid=ab-cd"),
        Ok(IotHubRequest::TwinPatchReported {
            rid: "ab-cd".into()
        })
    );
    assert_eq!(
        parse_iothub_request("$iothub/methods/res/200/?$rid=7f"),
        Ok(IotHubRequest::MethodResponse {
            status: 200,
            rid: "7f".into()
        })
    );
    assert!(parse_iothub_request("$iothub/methods/res/abc/?$rid=1").is_err());
    assert!(parse_iothub_request("$iothub/methods/res/xx/?$rid=1").is_err());
    assert!(parse_iothub_request("$iothub/twin/GET/").is_err());
    assert!(parse_iothub_request("$iothub/other/?$rid=1").is_err());
    assert!(parse_iothub_request("devices/d/messages/events/").is_err());
}

#[test]
fn request_topics_we_build_we_read() {
    assert_eq!(twin_get_topic("7"), "$iothub/twin/GET/?$rid=7");
    assert_eq!(
        twin_patch_reported_topic("8"),
        "$iothub/twin/PATCH/properties/reported/?$rid=8"
    );
    assert_eq!(
        method_response_topic(200, "ab-1"),
        "$iothub/methods/res/200/?$rid=ab-1"
    );
    assert_eq!(
        parse_iothub_request(&twin_patch_reported_topic("8")),
        Ok(IotHubRequest::TwinPatchReported { rid: "8".into() })
    );
    assert_eq!(
        parse_iothub_request(&method_response_topic(500, "x")),
        Ok(IotHubRequest::MethodResponse {
            status: 500,
            rid: "x".into()
        })
    );
}

#[test]
fn hub_to_device_topics() {
    assert_eq!(
        twin_response_topic(204, "3", Some(9)),
        "$iothub/twin/res/204/?$rid=3&$version=9"
    );
    assert_eq!(
        twin_response_topic(200, "3", None),
        "$iothub/twin/res/200/?$rid=3"
    );
    assert_eq!(
        desired_patch_topic(Some(4)),
        "$iothub/twin/PATCH/properties/desired/?$version=4"
    );
    assert_eq!(
        desired_patch_topic(None),
        "$iothub/twin/PATCH/properties/desired/"
    );
    assert_eq!(
        method_request_topic("do it", "1"),
        "$iothub/methods/POST/do%20it/?$rid=1"
    );
    assert_eq!(
        method_request_topic("re-boot!*", "a"),
        "$iothub/methods/POST/re-boot!*/?$rid=a"
    );
    assert_eq!(c2d_filter("d1"), "devices/d1/messages/devicebound/#");
    assert_eq!(
        c2d_topic("d1", "%24.mid=1"),
        "devices/d1/messages/devicebound/%24.mid=1"
    );
    assert_eq!(
        module_input_topic("d", "B", "input1", "k=v"),
        "devices/d/modules/B/inputs/input1/k=v"
    );
}

#[test]
fn classify_hub_topics() {
    assert_eq!(
        classify("$iothub/twin/res/204/?$rid=12&$version=3", "d"),
        HubTopic::TwinResponse {
            status: 204,
            rid: "12".into(),
            version: Some(3)
        }
    );
    assert_eq!(
        classify("$iothub/twin/res/200/?$rid=1", "d"),
        HubTopic::TwinResponse {
            status: 200,
            rid: "1".into(),
            version: None
        }
    );
    assert_eq!(
        classify("$iothub/twin/res/abc/?$rid=1", "d"),
        HubTopic::Other
    );
    assert_eq!(
        classify("$iothub/twin/PATCH/properties/desired/?$version=8", "d"),
        HubTopic::DesiredPatch { version: Some(8) }
    );
    assert_eq!(
        classify("$iothub/methods/POST/re%20boot/?$rid=a1", "d"),
        HubTopic::MethodRequest {
            name: "re boot".into(),
            rid: "a1".into()
        }
    );
    assert_eq!(
        classify(
            "devices/d1/messages/devicebound/%24.mid=1&%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound",
            "d1"
        ),
        HubTopic::CloudToDevice {
            bag: "%24.mid=1&%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound".into()
        }
    );
    assert_eq!(
        classify("devices/d1/messages/devicebound/", "d1"),
        HubTopic::CloudToDevice { bag: String::new() }
    );
    // Another device's C2D, other topics.
    assert_eq!(
        classify("devices/d2/messages/devicebound/", "d1"),
        HubTopic::Other
    );
    assert_eq!(
        classify("devices/d10/messages/devicebound/", "d1"),
        HubTopic::Other
    );
    assert_eq!(
        classify("$dps/registrations/res/200/?$rid=1", "d1"),
        HubTopic::Other
    );
    // What the hub builds, the device reads.
    assert_eq!(
        classify(&twin_response_topic(204, "5", Some(2)), "d"),
        HubTopic::TwinResponse {
            status: 204,
            rid: "5".into(),
            version: Some(2)
        }
    );
    assert_eq!(
        classify(&method_request_topic("do it", "1"), "d"),
        HubTopic::MethodRequest {
            name: "do it".into(),
            rid: "1".into()
        }
    );
}

#[test]
fn subscriptions() {
    use Subscription::*;
    let device = |f| classify_filter(f, "d1", None);
    let module = |f| classify_filter(f, "d", Some("A"));
    assert_eq!(device("$iothub/twin/res/#"), Some(TwinResponses));
    assert_eq!(
        device("$iothub/twin/PATCH/properties/desired/#"),
        Some(DesiredPatches)
    );
    assert_eq!(device("$iothub/methods/POST/#"), Some(Methods));
    assert_eq!(
        device("devices/d1/messages/devicebound/#"),
        Some(CloudToDevice)
    );
    assert_eq!(device("devices/d2/messages/devicebound/#"), None);
    assert_eq!(device("devices/d10/messages/devicebound/#"), None);
    assert_eq!(device("devices/d1/modules/A/#"), None);
    assert_eq!(device("#"), None);
    assert_eq!(module("devices/d/modules/A/inputs/#"), Some(ModuleInputs));
    assert_eq!(module("devices/d/modules/A/#"), Some(ModuleInputs));
    assert_eq!(module("devices/d/modules/B/#"), None);
    assert_eq!(module("devices/d/modules/AB/#"), None);
    assert_eq!(module("devices/d/messages/devicebound/#"), None);
    assert_eq!(module("$iothub/twin/res/#"), Some(TwinResponses));
    assert_eq!(
        module("$iothub/twin/PATCH/properties/desired/#"),
        Some(DesiredPatches)
    );
    assert_eq!(module("$iothub/methods/POST/#"), Some(Methods));
    assert_eq!(module("#"), None);
}
