//! The AMQP nodes the service plane serves, parsed from link addresses (see
//! `docs/protocol-notes.md`, "AMQP nodes of the service plane"). Addresses arrive bare
//! (`$cbs`), rooted (`/messages/devicebound`) or as URLs (`amqps://{host}:5671/{eventHub}/...`);
//! keywords compare case-insensitively, as Azure's do.

/// What a link address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// `$cbs`: claims-based security (put-token).
    Cbs,
    /// `$management`: Event Hubs' READ of the event hub and its partitions.
    Management,
    /// `/messages/devicebound`: service-side cloud-to-device sends.
    C2dSend,
    /// `/messages/servicebound/feedback`: cloud-to-device feedback batches.
    C2dFeedback,
    /// `{eventHub}/ConsumerGroups/{group}/Partitions/{partition}`.
    Partition {
        event_hub: String,
        consumer_group: String,
        partition: String,
    },
    /// `{eventHub}/...` other than a partition (e.g. `{eventHub}/$management` as a receiver
    /// address prefix): an Event Hubs entity path we do not serve as such.
    EventHubOther { event_hub: String, rest: String },
    /// `messages/events[/...]` on the hub's host: answered with a redirect to the
    /// Event Hubs-compatible name; `rest` is what followed `messages/events` (with its `/`).
    HubEvents { rest: String },
    /// Anything else.
    Unknown(String),
}

/// The path of an address: scheme and authority removed, no leading `/`.
pub fn path_of(address: &str) -> &str {
    let rest = match address.find("://") {
        Some(i) => {
            let after = &address[i + 3..];
            after.find('/').map_or("", |j| &after[j..])
        }
        None => address,
    };
    rest.trim_start_matches('/')
}

/// Parses a link address; `event_hub` is the Event Hubs-compatible name.
pub fn parse(address: &str, event_hub: &str) -> Node {
    let path = path_of(address).trim_end_matches('/');
    let lower = path.to_ascii_lowercase();
    match lower.as_str() {
        "$cbs" => return Node::Cbs,
        "$management" => return Node::Management,
        "messages/devicebound" => return Node::C2dSend,
        "messages/servicebound/feedback" => return Node::C2dFeedback,
        _ => {}
    }
    if lower == "messages/events" || lower.starts_with("messages/events/") {
        return Node::HubEvents {
            rest: path["messages/events".len()..].to_string(),
        };
    }
    let segments: Vec<&str> = path.split('/').collect();
    if let [eh, cg_kw, group, p_kw, partition] = segments[..]
        && cg_kw.eq_ignore_ascii_case("consumergroups")
        && p_kw.eq_ignore_ascii_case("partitions")
        && !group.is_empty()
        && !partition.is_empty()
    {
        return Node::Partition {
            event_hub: eh.to_string(),
            consumer_group: group.to_string(),
            partition: partition.to_string(),
        };
    }
    match path.split_once('/') {
        Some((eh, rest)) if eh.eq_ignore_ascii_case(event_hub) => {
            if rest.eq_ignore_ascii_case("$management") {
                Node::Management
            } else {
                Node::EventHubOther {
                    event_hub: eh.to_string(),
                    rest: rest.to_string(),
                }
            }
        }
        _ => Node::Unknown(path.to_string()),
    }
}

/// The resource a link on `node` needs a grant for: `{host}/{path}` (the token audiences
/// Azure's clients use: `sb://{host}/{eventHub}`, `{host}/messages/devicebound`, `{host}`).
pub fn resource(host: &str, address: &str) -> String {
    let path = path_of(address).trim_end_matches('/');
    if path.is_empty() {
        host.to_ascii_lowercase()
    } else {
        format!("{}/{}", host.to_ascii_lowercase(), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes() {
        assert_eq!(parse("$cbs", "hub"), Node::Cbs);
        assert_eq!(parse("$management", "hub"), Node::Management);
        assert_eq!(parse("hub/$management", "hub"), Node::Management);
        assert_eq!(parse("/messages/devicebound", "hub"), Node::C2dSend);
        assert_eq!(
            parse("/messages/serviceBound/feedback", "hub"),
            Node::C2dFeedback
        );
        assert_eq!(
            parse(
                "amqps://h.example:5671/hub/ConsumerGroups/$Default/Partitions/3",
                "hub"
            ),
            Node::Partition {
                event_hub: "hub".into(),
                consumer_group: "$Default".into(),
                partition: "3".into()
            }
        );
        assert_eq!(
            parse("hub/consumergroups/g1/partitions/0", "hub"),
            Node::Partition {
                event_hub: "hub".into(),
                consumer_group: "g1".into(),
                partition: "0".into()
            }
        );
        assert_eq!(
            parse("amqps://h.example/messages/events/$management", "hub"),
            Node::HubEvents {
                rest: "/$management".into()
            }
        );
        assert_eq!(
            parse("messages/events", "hub"),
            Node::HubEvents {
                rest: String::new()
            }
        );
        assert_eq!(
            parse("hub/ConsumerGroups/$Default", "hub"),
            Node::EventHubOther {
                event_hub: "hub".into(),
                rest: "ConsumerGroups/$Default".into()
            }
        );
        assert_eq!(
            parse("devices/d1/messages/events", "hub"),
            Node::Unknown("devices/d1/messages/events".into())
        );
    }

    #[test]
    fn resources() {
        assert_eq!(
            resource("H.example", "amqps://h.example:5671/hub/x/"),
            "h.example/hub/x"
        );
        assert_eq!(resource("h.example", "$cbs"), "h.example/$cbs");
        assert_eq!(path_of("amqps://h.example"), "");
    }
}
