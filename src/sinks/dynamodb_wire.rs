//! DynamoDB's JSON protocol for the `conditional` hot path: one guarded PutItem or DeleteItem per
//! request, its body written straight from the `WriteRequest`, signed with `aws-sigv4` and sent
//! over a pooled hyper connection. The SDK's orchestrator (runtime plugins, interceptors, a
//! config bag per request) cost ~90 µs of CPU per request, most of a conditional write; signing
//! and HTTP (reqwest's pooled client) are what is left here. Credentials come from the SDK config's provider (environment,
//! IRSA, profile, IMDS), cached until five minutes before they expire: never resolved per request.
//!
//! It must not retry (the pool does) or decide error classes (`aws::classify_code` does);
//! `transact` and `batch` writes, table reads and the control table stay on the SDK.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use tokio::sync::RwLock;

use crate::event::Value;
use crate::route::{ATTR_SEQ, WriteKind, WriteRequest};

/// The version guard: the item is new, or the stored `_seq` is older than this write's.
pub const CONDITION: &str = "attribute_not_exists(#pk) OR #seq < :seq";

/// Why a call did not succeed.
#[derive(Debug)]
pub enum WireError {
    /// DynamoDB answered with an error: its HTTP status, error code and message.
    Service {
        status: u16,
        code: String,
        message: String,
    },
    /// No answer: connection, TLS, timeout, or an unreadable response.
    Transport(String),
    /// No credentials to sign with.
    Credentials(String),
}

/// A DynamoDB endpoint with its signing identity and connection pool. Cheap to share.
pub struct WireClient {
    http: reqwest::Client,
    url: reqwest::Url,
    host: String,
    region: String,
    provider: Option<SharedCredentialsProvider>,
    cached: RwLock<Option<Credentials>>,
}

/// Credentials are refreshed this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

impl WireClient {
    /// A client for the SDK config's region and endpoint (`aws.endpoint_url`, else DynamoDB's
    /// regional endpoint).
    pub fn new(sdk: &aws_config::SdkConfig, timeout: Duration) -> Result<WireClient, String> {
        let region = sdk
            .region()
            .map(|r| r.as_ref().to_string())
            .ok_or("no AWS region configured")?;
        let url = sdk.endpoint_url().map_or_else(
            || format!("https://dynamodb.{region}.amazonaws.com/"),
            str::to_string,
        );
        let url =
            reqwest::Url::parse(&url).map_err(|e| format!("endpoint {url:?} is not a URL: {e}"))?;
        // The Host header as the HTTP client sends it (the port only when the URL names one).
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(format!("endpoint {url} has no host")),
        };
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(WireClient {
            http,
            url,
            host,
            region,
            provider: sdk.credentials_provider(),
            cached: RwLock::new(None),
        })
    }

    /// The identity to sign with: cached credentials, refreshed shortly before they expire.
    pub async fn identity(&self) -> Result<Identity, WireError> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
        };
        if let Some(c) = self.cached.read().await.as_ref()
            && fresh(c)
        {
            return Ok(Identity::from(c.clone()));
        }
        let mut slot = self.cached.write().await;
        if let Some(c) = slot.as_ref()
            && fresh(c)
        {
            return Ok(Identity::from(c.clone()));
        }
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| WireError::Credentials("no credentials provider".into()))?;
        let c = provider
            .provide_credentials()
            .await
            .map_err(|e| WireError::Credentials(e.to_string()))?;
        *slot = Some(c.clone());
        Ok(Identity::from(c))
    }

    /// One conditional write of `req` to `table` (the version guard of DESIGN §3.2).
    pub async fn conditional(
        &self,
        identity: &Identity,
        table: &str,
        req: &WriteRequest,
    ) -> Result<(), WireError> {
        let target = match &req.kind {
            WriteKind::Put(_) => "DynamoDB_20120810.PutItem",
            WriteKind::Delete => "DynamoDB_20120810.DeleteItem",
        };
        let body =
            body(table, req).map_err(|e| WireError::Transport(format!("request body: {e}")))?;
        self.send(identity, target, body).await
    }

    async fn send(
        &self,
        identity: &Identity,
        target: &'static str,
        body: Vec<u8>,
    ) -> Result<(), WireError> {
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", target),
            ("host", self.host.as_str()),
        ];
        let signature = self
            .sign(identity, &headers, &body)
            .map_err(WireError::Transport)?;
        let mut request = self.http.post(self.url.clone()).body(body);
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            request = request.header(*k, *v);
        }
        for (k, v) in signature.headers() {
            request = request.header(k, v);
        }
        let response = request
            .send()
            .await
            .map_err(|e| WireError::Transport(error_chain(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| WireError::Transport(error_chain(&e)))?;
        if status.is_success() {
            return Ok(());
        }
        let (code, message) = error_of(&bytes);
        Err(WireError::Service {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// SigV4 for a POST of `body` with `headers` (the `Authorization`, `X-Amz-Date` and, with
    /// temporary credentials, `X-Amz-Security-Token` headers to add).
    fn sign(
        &self,
        identity: &Identity,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<aws_sigv4::http_request::SigningInstructions, String> {
        let params = v4::SigningParams::builder()
            .identity(identity)
            .region(&self.region)
            .name("dynamodb")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        Ok(sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts()
            .0)
    }
}

/// An error with its sources (reqwest's own message omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The error code (after the `#` of `__type`) and message of a DynamoDB error body.
fn error_of(body: &[u8]) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => (
            b.kind
                .as_deref()
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
                .unwrap_or_else(|| "Unknown".into()),
            b.message.unwrap_or_default(),
        ),
        Err(_) => (
            "Unknown".into(),
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    }
}

/// A value as DynamoDB's JSON attribute value (`{"S": …}`, `{"N": …}`, …), as `to_attr` maps it.
struct Attr<'a>(&'a Value);

impl Serialize for Attr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self.0 {
            Value::Null => m.serialize_entry("NULL", &true)?,
            Value::Bool(b) => m.serialize_entry("BOOL", b)?,
            Value::Number(n) => m.serialize_entry("N", n)?,
            Value::String(v) => m.serialize_entry("S", v)?,
            Value::Bytes(b) => {
                use base64::Engine;
                m.serialize_entry("B", &base64::engine::general_purpose::STANDARD.encode(b))?;
            }
            Value::List(l) => m.serialize_entry("L", &List(l))?,
            Value::Map(map) => m.serialize_entry("M", &Item(map))?,
        }
        m.end()
    }
}

struct List<'a>(&'a [Value]);

impl Serialize for List<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Attr))
    }
}

struct Item<'a>(&'a std::collections::BTreeMap<String, Value>);

impl Serialize for Item<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, Attr(v))))
    }
}

/// The guard's names and values, shared by both operations.
#[derive(Serialize)]
struct Guard<'a> {
    #[serde(rename = "ConditionExpression")]
    condition: &'static str,
    #[serde(rename = "ExpressionAttributeNames")]
    names: Names<'a>,
    #[serde(rename = "ExpressionAttributeValues")]
    values: Values<'a>,
}

#[derive(Serialize)]
struct Names<'a> {
    #[serde(rename = "#pk")]
    pk: &'a str,
    #[serde(rename = "#seq")]
    seq: &'static str,
}

#[derive(Serialize)]
struct Values<'a> {
    #[serde(rename = ":seq")]
    seq: Str<'a>,
}

/// A string attribute value: `{"S": …}`.
#[derive(Serialize)]
struct Str<'a> {
    #[serde(rename = "S")]
    s: &'a str,
}

fn guard(req: &WriteRequest) -> Guard<'_> {
    Guard {
        condition: CONDITION,
        names: Names {
            pk: &req.pk_attribute,
            seq: ATTR_SEQ,
        },
        values: Values {
            seq: Str {
                s: req.seq.as_str(),
            },
        },
    }
}

/// The body of a guarded write: PutItem's (the item) or DeleteItem's (the key), with the version
/// guard.
pub fn body(table: &str, req: &WriteRequest) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "TableName")]
        table: &'a str,
        #[serde(rename = "Item", skip_serializing_if = "Option::is_none")]
        item: Option<Item<'a>>,
        #[serde(rename = "Key", skip_serializing_if = "Option::is_none")]
        key: Option<Key<'a>>,
        #[serde(flatten)]
        guard: Guard<'a>,
    }
    struct Key<'a>(&'a str, Str<'a>);
    impl Serialize for Key<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry(self.0, &self.1)?;
            m.end()
        }
    }
    let (item, key) = match &req.kind {
        WriteKind::Put(item) => (Some(Item(item)), None),
        WriteKind::Delete => (None, Some(Key(&req.pk_attribute, Str { s: &req.pk }))),
    };
    serde_json::to_vec(&Body {
        table,
        item,
        key,
        guard: guard(req),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON attribute values match what the SDK sends for the same `AttributeValue`s.
    #[test]
    fn items_are_written_as_dynamodb_attribute_values() {
        let item = std::collections::BTreeMap::from([
            ("a".to_string(), Value::Null),
            ("b".to_string(), Value::Bool(true)),
            ("n".to_string(), Value::Number("-12.50".into())),
            ("s".to_string(), Value::String("x\"y".into())),
            ("y".to_string(), Value::Bytes(vec![0, 255])),
            (
                "l".to_string(),
                Value::List(vec![Value::Number("1".into()), Value::String("z".into())]),
            ),
            (
                "m".to_string(),
                Value::Map(std::collections::BTreeMap::from([(
                    "k".to_string(),
                    Value::Bool(false),
                )])),
            ),
        ]);
        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&Item(&item)).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "a": {"NULL": true},
                "b": {"BOOL": true},
                "n": {"N": "-12.50"},
                "s": {"S": "x\"y"},
                "y": {"B": "AP8="},
                "l": {"L": [{"N": "1"}, {"S": "z"}]},
                "m": {"M": {"k": {"BOOL": false}}},
            })
        );
        let guard: serde_json::Value = serde_json::to_value(Guard {
            condition: CONDITION,
            names: Names {
                pk: "pk",
                seq: ATTR_SEQ,
            },
            values: Values {
                seq: Str { s: "0042" },
            },
        })
        .unwrap();
        assert_eq!(
            guard,
            serde_json::json!({
                "ConditionExpression": CONDITION,
                "ExpressionAttributeNames": {"#pk": "pk", "#seq": ATTR_SEQ},
                "ExpressionAttributeValues": {":seq": {"S": "0042"}},
            })
        );
    }

    #[test]
    fn error_codes_are_read_from_the_type() {
        let (code, msg) = error_of(
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#,
        );
        assert_eq!(code, "ConditionalCheckFailedException");
        assert_eq!(msg, "The conditional request failed");
        let (code, msg) = error_of(b"<html>bad gateway</html>");
        assert_eq!(code, "Unknown");
        assert!(msg.contains("bad gateway"));
    }
}
