//! A small HTTP proxy of the project's own, on 127.0.0.1, between the AWS
//! SDK and a local engine, that injects the failures the engines never
//! produce. kinesis-mock never throttles; through this proxy, a set share
//! of each PutRecords call's entries is *withheld* from the engine and
//! answered as `ProvisionedThroughputExceededException`, exactly as Kinesis
//! reports a partial failure: those records really were not written.
//! SubscribeToShard responses are streamed through, and can be cut after a
//! set time: in turn ended cleanly (as Kinesis ends a session) and aborted
//! mid-stream (a dropped connection).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the proxy does.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// PutRecords: fail every n-th entry (counting across calls); 0: never.
    pub fail_every: u64,
    /// Stop failing after this many injected failures (both kinds).
    pub budget: u64,
    /// GetRecords: answer every n-th call with a fault instead of the
    /// engine's answer, cycling through throttling, an expired iterator,
    /// a 500 and a dropped connection; 0: never.
    pub get_records_fault_every: u64,
    /// SubscribeToShard: cut each subscription's response this long after
    /// it started, in turn ending it cleanly and aborting it.
    pub cut_subscriptions_after: Option<Duration>,
    /// Refuse every request with this error code (HTTP 400), as AWS
    /// answers a caller without the permission: `AccessDeniedException`.
    pub refuse_all_with: Option<&'static str>,
}

impl Faults {
    pub fn put_records(fail_every: u64, budget: u64) -> Self {
        Self {
            fail_every,
            budget,
            ..Self::default()
        }
    }
}

/// The proxy's answers: buffered, or streamed (SubscribeToShard).
type ProxyBody = BoxBody<Bytes, std::io::Error>;

fn buffered(response: Response<Full<Bytes>>) -> Response<ProxyBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// A streamed body that ends (or, with `abort`, fails) at `deadline`.
struct Cut {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    abort: bool,
    /// Counted here when the cut comes: [ended, aborted].
    cuts: Arc<[AtomicU64; 2]>,
}

impl Body for Cut {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.cuts[usize::from(this.abort)].fetch_add(1, Ordering::SeqCst);
            return Poll::Ready(if this.abort {
                Some(Err(std::io::Error::other("cut by the test proxy")))
            } else {
                None
            });
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map_err(std::io::Error::other)
    }
}

/// What a faulty GetRecords answer was, in the order they cycle.
const GET_RECORDS_FAULTS: [&str; 4] = [
    "ProvisionedThroughputExceededException",
    "ExpiredIteratorException",
    "InternalFailure",
    "dropped connection",
];

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub url: String,
    pub injected: Arc<AtomicU64>,
    /// GetRecords faults injected, by kind (as in `GET_RECORDS_FAULTS`).
    pub get_records_faults: Arc<[AtomicU64; 4]>,
    /// Subscriptions cut: [ended cleanly, aborted].
    pub subscription_cuts: Arc<[AtomicU64; 2]>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: &str, faults: Faults) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            faults,
            seen: AtomicU64::new(0),
            injected: Arc::new(AtomicU64::new(0)),
            get_records_calls: AtomicU64::new(0),
            get_records_faults: Arc::new(Default::default()),
            subscriptions: AtomicU64::new(0),
            subscription_cuts: Arc::new(Default::default()),
        });
        let injected = state.injected.clone();
        let get_records_faults = state.get_records_faults.clone();
        let subscription_cuts = state.subscription_cuts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move {
                            match state.handle(req).await {
                                Some(response) => Ok(response),
                                // An error from the service makes hyper
                                // close the connection without an answer.
                                None => Err(std::io::Error::other("dropped by the test proxy")),
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            injected,
            get_records_faults,
            subscription_cuts,
            task,
        }
    }
}

struct State {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    faults: Faults,
    seen: AtomicU64,
    injected: Arc<AtomicU64>,
    get_records_calls: AtomicU64,
    get_records_faults: Arc<[AtomicU64; 4]>,
    subscriptions: AtomicU64,
    subscription_cuts: Arc<[AtomicU64; 2]>,
}

impl State {
    /// The answer to a request; `None` drops the connection instead.
    async fn handle(&self, request: Request<Incoming>) -> Option<Response<ProxyBody>> {
        let target = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if let Some(code) = self.faults.refuse_all_with {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Some(buffered(refusal(400, code)));
        }
        let every = self.faults.get_records_fault_every;
        if target.ends_with(".GetRecords")
            && every > 0
            && self.injected.load(Ordering::SeqCst) < self.faults.budget
            && (self.get_records_calls.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(every)
        {
            let n =
                self.injected.fetch_add(1, Ordering::SeqCst) as usize % GET_RECORDS_FAULTS.len();
            self.get_records_faults[n].fetch_add(1, Ordering::SeqCst);
            let (status, code) = match GET_RECORDS_FAULTS[n] {
                "dropped connection" => return None,
                "InternalFailure" => (500, "InternalFailure"),
                other => (400, other),
            };
            return Some(buffered(refusal(status, code)));
        }
        if target.ends_with(".SubscribeToShard") {
            return Some(self.subscribe(request).await);
        }
        Some(buffered(self.handle_put_records(request).await))
    }

    /// Forwards a SubscribeToShard call and streams its events back, cut
    /// as the faults say.
    async fn subscribe(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return buffered(error(
                    502,
                    &format!("proxy could not read the request: {e}"),
                ));
            }
        };
        let Some(request) = self.upstream_request(&parts, body) else {
            return buffered(error(500, "proxy could not build the request"));
        };
        let response = match self.client.request(request).await {
            Ok(response) => response,
            Err(e) => {
                return buffered(error(
                    502,
                    &format!("proxy could not reach the engine: {e}"),
                ));
            }
        };
        let (parts, incoming) = response.into_parts();
        let body: ProxyBody = match self.faults.cut_subscriptions_after {
            Some(after) if parts.status == 200 => {
                let n = self.subscriptions.fetch_add(1, Ordering::SeqCst);
                Cut {
                    inner: incoming,
                    deadline: Box::pin(tokio::time::sleep(after)),
                    abort: n % 2 == 1,
                    cuts: self.subscription_cuts.clone(),
                }
                .boxed()
            }
            _ => incoming.map_err(std::io::Error::other).boxed(),
        };
        let mut builder = Response::builder().status(parts.status);
        for (name, value) in &parts.headers {
            if name != "content-length" {
                builder = builder.header(name, value);
            }
        }
        builder
            .body(body)
            .unwrap_or_else(|_| buffered(error(500, "proxy could not copy the answer")))
    }

    async fn handle_put_records(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return error(502, &format!("proxy could not read the request: {e}")),
        };
        let is_put_records = parts
            .headers
            .get("x-amz-target")
            .is_some_and(|t| t.as_bytes().ends_with(b".PutRecords"));
        if !is_put_records {
            return self.forward(&parts, body).await.0;
        }
        let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return self.forward(&parts, body).await.0;
        };
        let entries = json["Records"].as_array().cloned().unwrap_or_default();
        let mut failed = Vec::new();
        let mut kept = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = self.faults.fail_every > 0
                && n.is_multiple_of(self.faults.fail_every)
                && self.injected.load(Ordering::SeqCst) < self.faults.budget;
            if fail {
                self.injected.fetch_add(1, Ordering::SeqCst);
                failed.push(index);
            } else {
                kept.push(entry);
            }
        }
        if failed.is_empty() {
            return self.forward(&parts, body).await.0;
        }
        let mut results: Vec<serde_json::Value> = Vec::new();
        let mut upstream_failed = 0;
        if !kept.is_empty() {
            json["Records"] = serde_json::Value::Array(kept);
            let (response, response_body) =
                self.forward(&parts, Bytes::from(json.to_string())).await;
            if response.status() != 200 {
                return response;
            }
            let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&response_body) else {
                return error(502, "proxy could not read the engine's answer");
            };
            upstream_failed = answer["FailedRecordCount"].as_u64().unwrap_or(0);
            results = answer["Records"].as_array().cloned().unwrap_or_default();
        }
        // Put the withheld entries back in their places, as failures.
        for index in &failed {
            results.insert(
                *index,
                serde_json::json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard (injected by the test proxy)"
                }),
            );
        }
        let answer = serde_json::json!({
            "FailedRecordCount": upstream_failed + failed.len() as u64,
            "Records": results,
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(answer.to_string())))
            .unwrap_or_else(|_| error(500, "proxy could not build its answer"))
    }

    /// The request to send upstream for `parts` and `body`.
    fn upstream_request(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
    ) -> Option<Request<Full<Bytes>>> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::builder()
            .method(parts.method.clone())
            .uri(format!("{}{path}", self.upstream));
        for (name, value) in &parts.headers {
            if name != "content-length" && name != "host" {
                builder = builder.header(name, value);
            }
        }
        builder.body(Full::new(body)).ok()
    }

    /// Forwards a request; returns the response and its body.
    async fn forward(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
    ) -> (Response<Full<Bytes>>, Bytes) {
        let Some(request) = self.upstream_request(parts, body) else {
            return (
                error(500, "proxy could not build the request"),
                Bytes::new(),
            );
        };
        match self.client.request(request).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let mut builder = Response::builder().status(parts.status);
                for (name, value) in &parts.headers {
                    if name != "content-length" && name != "transfer-encoding" {
                        builder = builder.header(name, value);
                    }
                }
                let response = builder
                    .body(Full::new(bytes.clone()))
                    .unwrap_or_else(|_| error(500, "proxy could not copy the answer"));
                (response, bytes)
            }
            Err(e) => (
                error(502, &format!("proxy could not reach the engine: {e}")),
                Bytes::new(),
            ),
        }
    }
}

/// An AWS JSON-protocol error answer with `code`.
fn refusal(status: u16, code: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": code, "message": "injected by the test proxy" });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response.headers_mut().insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_str(code)
            .unwrap_or(hyper::header::HeaderValue::from_static("Unknown")),
    );
    response
}

fn error(status: u16, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_string())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    response
}
