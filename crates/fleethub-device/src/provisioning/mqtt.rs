//! DPS over MQTT (docs/protocol-notes.md, "DPS MQTT topics"): CONNECT (clientId = registration ID, SAS password),
//! SUBSCRIBE `$dps/registrations/res/#` at QoS 1, PUBLISH register / poll at QoS 1 with a
//! decimal `$rid` counter, match responses by `$rid`.

use fleethub_mqtt_codec::{QoS, SubscribeReturnCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Next, ProvisioningClient, ProvisioningError, RegistrationResult, interpret};
use crate::mqtt_client::{MqttClient, MqttIncoming, MqttOptions};
use fleethub_iot_protocol::dps::{self, RESPONSE_FILTER as RESPONSE_TOPIC_FILTER};
use fleethub_iot_protocol::identity;

/// Keep-alive announced in CONNECT (the Python SDK's default).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_mins(1);
/// Bound on the courtesy DISCONNECT at the end.
const DISCONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

enum Request {
    Register,
    Poll(String),
}

pub(super) async fn register<S>(
    client: &ProvisioningClient,
    stream: S,
) -> Result<RegistrationResult, ProvisioningError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let options = MqttOptions::new(client.registration_id.clone())
        .with_credentials(
            identity::dps_username(
                &client.id_scope,
                &client.registration_id,
                dps::MQTT_API_VERSION,
                crate::USER_AGENT,
            ),
            client.sas_token()?.into_bytes(),
        )
        .with_keep_alive(KEEP_ALIVE);
    let (mqtt, mut incoming) = MqttClient::connect(stream, options).await?;
    let result = run(client, &mqtt, &mut incoming).await;
    let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, mqtt.disconnect()).await;
    result
}

async fn run(
    client: &ProvisioningClient,
    mqtt: &MqttClient,
    incoming: &mut MqttIncoming,
) -> Result<RegistrationResult, ProvisioningError> {
    let codes = mqtt
        .subscribe(vec![(RESPONSE_TOPIC_FILTER.to_string(), QoS::AtLeastOnce)])
        .await?;
    if codes.first() == Some(&SubscribeReturnCode::Failure) || codes.is_empty() {
        return Err(ProvisioningError::InvalidResponse(format!(
            "SUBSCRIBE {RESPONSE_TOPIC_FILTER} refused"
        )));
    }
    // Python always sends `"payload": null` when there is none.
    let register_body = serde_json::to_vec(&client.registration_body(true))
        .map_err(|e| ProvisioningError::Config(e.to_string()))?;
    let mut request = Request::Register;
    let mut rid: u64 = 0;
    loop {
        rid += 1;
        let (topic, body) = match &request {
            Request::Register => (dps::register_topic(rid), register_body.clone()),
            Request::Poll(op) => (dps::operation_status_topic(rid, op), b" ".to_vec()),
        };
        mqtt.publish(topic, QoS::AtLeastOnce, body).await?;
        let rid_text = rid.to_string();
        let (response, payload) = loop {
            let Some(publish) = incoming.recv().await else {
                let reason = incoming.close_reason().unwrap_or_else(|| "closed".into());
                return Err(ProvisioningError::Mqtt(
                    crate::mqtt_client::MqttError::ConnectionLost(reason),
                ));
            };
            match dps::parse_response_topic(&publish.topic) {
                Some(t) if t.rid == rid_text => break (t, publish.payload),
                _ => tracing::debug!(topic = %publish.topic, "ignoring unrelated publish"),
            }
        };
        match interpret(
            response.status,
            &payload,
            response.retry_after,
            &client.poll,
        )? {
            Next::Done(result) => return Ok(*result),
            Next::Poll {
                operation_id,
                after,
            } => {
                tokio::time::sleep(after).await;
                request = Request::Poll(operation_id);
            }
            Next::Retry { after } => {
                tracing::debug!(status = response.status, ?after, "DPS asked to retry");
                tokio::time::sleep(after).await;
            }
        }
    }
}
