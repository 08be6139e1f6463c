//! HTTP to the Local API: the bouncer's decision stream (`X-Api-Key`) and
//! the watcher's login and alerts (JWT), as `pkg/models/localapi_swagger.yaml`
//! of crowdsec defines them.

use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};

use super::decisions::StreamResponse;

/// Why a request to the Local API failed. Every message names the URL.
#[derive(Debug)]
pub enum LapiError {
    /// 401/403: the key or the machine's credentials are not accepted;
    /// retrying will not help until the operator fixes them.
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// Connection refused, timed out, DNS, TLS: the API is away.
    Unreachable { url: String, error: String },
    /// Any other status, or a body that is not what the API defines.
    Bad { url: String, message: String },
}

impl LapiError {
    /// Worth retrying later with the same credentials.
    pub fn is_transient(&self) -> bool {
        !matches!(self, LapiError::Refused { .. })
    }
}

impl fmt::Display for LapiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LapiError::Refused {
                url,
                status,
                message,
            } => write!(
                f,
                "{url}: the Local API answered {status} ({message}): check the key (cscli bouncers list) or the machine credentials (cscli machines list)"
            ),
            LapiError::Unreachable { url, error } => {
                write!(f, "{url}: Local API unreachable: {error}")
            }
            LapiError::Bad { url, message } => write!(f, "{url}: {message}"),
        }
    }
}

impl std::error::Error for LapiError {}

/// A client for one Local API.
#[derive(Clone)]
pub struct Lapi {
    http: reqwest::Client,
    base: String,
}

/// What the API says when it refuses something: `{"message": "..."}`.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

#[derive(Serialize)]
struct Login<'a> {
    machine_id: &'a str,
    password: &'a str,
    scenarios: &'a [&'a str],
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
    /// RFC 3339 time at which the token stops being accepted.
    #[serde(default)]
    expire: Option<String>,
}

/// A watcher's token.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub expire: Option<String>,
}

/// One alert as `POST /v1/alerts` takes it, with the decision it asks for.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub scenario: String,
    pub scenario_hash: String,
    pub scenario_version: String,
    pub message: String,
    pub events_count: i32,
    pub start_at: String,
    pub stop_at: String,
    pub capacity: i32,
    pub leakspeed: String,
    pub simulated: bool,
    pub remediation: bool,
    pub events: Vec<AlertEvent>,
    pub source: AlertSource,
    pub decisions: Vec<AlertDecision>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    pub timestamp: String,
    pub meta: Vec<Meta>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertSource {
    pub scope: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertDecision {
    pub origin: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub scope: String,
    pub value: String,
    pub duration: String,
    pub scenario: String,
}

impl Lapi {
    /// `base` is the configured URL (`http://127.0.0.1:8080`, with or
    /// without a final slash).
    pub fn new(base: &str, timeout: Duration) -> Result<Lapi, LapiError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("sipguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LapiError::Bad {
                url: base.to_string(),
                message: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Lapi {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /v1/decisions/stream`: everything with `startup`, else what
    /// changed since this bouncer's previous pull.
    pub async fn decisions_stream(
        &self,
        key: &str,
        startup: bool,
        origins: Option<&[String]>,
    ) -> Result<StreamResponse, LapiError> {
        let url = self.url("/v1/decisions/stream");
        let mut query: Vec<(&str, String)> = vec![
            ("startup", startup.to_string()),
            // Every decision with its id: the set keeps the longest per
            // prefix itself and deletions name the decision they end.
            ("dedup", "false".into()),
        ];
        if let Some(o) = origins {
            query.push(("origins", o.join(",")));
        }
        let resp = self
            .http
            .get(&url)
            .header("X-Api-Key", key)
            .query(&query)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        let body = checked(&url, resp).await?;
        serde_json::from_str(&body).map_err(|e| LapiError::Bad {
            url: url.clone(),
            message: format!("the decision stream is not what the Local API sends: {e}"),
        })
    }

    /// `POST /v1/watchers/login`.
    pub async fn login(&self, machine_id: &str, password: &str) -> Result<Token, LapiError> {
        let url = self.url("/v1/watchers/login");
        let resp = self
            .http
            .post(&url)
            .json(&Login {
                machine_id,
                password,
                scenarios: &[super::SCENARIO],
            })
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        let body = checked(&url, resp).await?;
        let a: LoginAnswer = serde_json::from_str(&body).map_err(|e| LapiError::Bad {
            url: url.clone(),
            message: format!("the login answer has no token: {e}"),
        })?;
        Ok(Token {
            token: a.token,
            expire: a.expire,
        })
    }

    /// `POST /v1/alerts`; `Refused` with 401 when the token has expired.
    pub async fn post_alerts(&self, token: &Token, alerts: &[Alert]) -> Result<(), LapiError> {
        let url = self.url("/v1/alerts");
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&token.token)
            .json(alerts)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        checked(&url, resp).await.map(|_| ())
    }
}

fn unreachable(url: &str, e: reqwest::Error) -> LapiError {
    // reqwest's Display stops at "error sending request"; the cause (refused,
    // timed out, certificate) is further down the chain.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    LapiError::Unreachable {
        url: url.to_string(),
        error: msg,
    }
}

async fn checked(url: &str, resp: reqwest::Response) -> Result<String, LapiError> {
    let status = resp.status();
    let body = resp.text().await.map_err(|e| unreachable(url, e))?;
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_str::<ErrorBody>(&body)
        .map(|b| b.message)
        .unwrap_or_else(|_| body.chars().take(200).collect());
    if status.as_u16() == 401 || status.as_u16() == 403 {
        return Err(LapiError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            message,
        });
    }
    Err(LapiError::Bad {
        url: url.to_string(),
        message: format!("the Local API answered {status}: {message}"),
    })
}
