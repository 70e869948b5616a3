//! The controller: turns each new config into commands for the frame loop.
//!
//! A new model or device preference starts a load beside the serving model
//! and swaps it in when warm. A new source is resolved (node override
//! included) and reopened. A new threshold, objects of interest or rate cap
//! and new sinks apply to the next frame without a new session.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

use super::cluster::Cluster;
use super::config::{
    ConfigError, Identity, ModelRequest, OutputSettings, ServeConfig, SourceLocation, SourcePlan,
    SourceRequest,
};
use super::config_watch::ConfigUpdate;
use super::frame_loop::{Command, Shared};
use super::loader::ModelLoader;
use super::sinks::Sinks;
use super::state::{AgentError, ErrorKind};
use crate::pipeline::RunSettings;

/// First delay before loading a model again after a transient failure; it
/// doubles up to [`MODEL_RETRY_MAX`]. The model store already retried the
/// download itself a few times by then.
const MODEL_RETRY_INITIAL: Duration = Duration::from_secs(10);
const MODEL_RETRY_MAX: Duration = Duration::from_secs(300);

/// First delay before reading the node's override annotation again; it
/// doubles up to [`NODE_RETRY_MAX`].
const NODE_RETRY_INITIAL: Duration = Duration::from_secs(1);
const NODE_RETRY_MAX: Duration = Duration::from_secs(60);

/// Applies config changes.
#[derive(Debug)]
pub struct Controller {
    pub loader: Arc<ModelLoader>,
    pub commands: Sender<Command>,
    pub shared: Shared,
    pub identity: Identity,
    pub cluster: Cluster,
    pub runtime: Handle,
    current: Option<ServeConfig>,
    model_task: Option<JoinHandle<()>>,
    source_task: Option<JoinHandle<()>>,
}

impl Controller {
    pub fn new(
        loader: Arc<ModelLoader>,
        commands: Sender<Command>,
        shared: Shared,
        identity: Identity,
        cluster: Cluster,
        runtime: Handle,
    ) -> Self {
        Self {
            loader,
            commands,
            shared,
            identity,
            cluster,
            runtime,
            current: None,
            model_task: None,
            source_task: None,
        }
    }

    /// Applies every update until the watcher stops.
    pub async fn run(mut self, mut updates: Receiver<ConfigUpdate>) {
        while let Some(update) = updates.recv().await {
            match update {
                Ok(config) => self.apply(config),
                Err(error) => self.reject(&error),
            }
        }
    }

    fn reject(&self, error: &ConfigError) {
        let message = self.shared.redactor.redact(&error.to_string());
        self.shared.metrics.observe_config_reload("invalid");
        self.shared
            .state
            .set_error(ErrorKind::Config, AgentError::new(error.reason(), &message));

        if self.current.is_some() {
            tracing::error!(error = %message, "Config file rejected; keeping the last valid config");
        } else {
            tracing::error!(error = %message, "Config file rejected; waiting for a valid one");
        }
    }

    fn apply(&mut self, config: ServeConfig) {
        self.learn_secrets(&config);
        self.shared.state.clear_error(ErrorKind::Config);
        self.shared.metrics.observe_config_reload("applied");
        tracing::info!(
            vision_model = %format!("{}/{}", config.vision_model.namespace, config.vision_model.name),
            model = %config.model.redacted_url(),
            "Config applied"
        );

        let previous = self.current.take();
        let previous = previous.as_ref();

        if previous.is_none_or(|previous| previous.model.needs_reload(&config.model)) {
            self.load_model(config.model.clone(), config.filter.run_settings());
        }
        if previous.is_none_or(|previous| previous.source != config.source) {
            self.plan_source(config.source.clone());
        }
        if previous.is_none_or(|previous| previous.filter != config.filter) {
            self.send(Command::Settings(config.filter.run_settings()));
        }
        if previous.is_none_or(|previous| previous.output != config.output) {
            self.start_sinks(&config.output);
        }
        self.current = Some(config);
    }

    /// Adds the config's passwords and URL query values to the redactor
    /// before anything can log them.
    fn learn_secrets(&self, config: &ServeConfig) {
        let redactor = &self.shared.redactor;
        for secret in config.secrets() {
            redactor.add(&secret);
        }
        redactor.add_url(&config.model.url);
        if let Some(SourceLocation::Url(url)) = &config.source.location {
            redactor.add_url(url);
        }
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::debug!("The frame loop has stopped; dropping a config change");
        }
    }

    /// Starts loading `request` beside the serving model, replacing any
    /// load still under way.
    fn load_model(&mut self, request: ModelRequest, settings: RunSettings) {
        if let Some(task) = self.model_task.take() {
            task.abort();
        }
        let generation = self.shared.model_generation.fetch_add(1, Ordering::AcqRel) + 1;

        self.model_task = Some(self.runtime.spawn(load_until_done(
            self.loader.clone(),
            request,
            settings,
            generation,
            self.commands.clone(),
            self.shared.clone(),
        )));
    }

    fn plan_source(&mut self, request: SourceRequest) {
        if let Some(task) = self.source_task.take() {
            task.abort();
        }
        self.source_task = Some(self.runtime.spawn(resolve_source(
            request,
            self.identity.clone(),
            self.cluster.clone(),
            self.commands.clone(),
            self.shared.clone(),
        )));
    }

    fn start_sinks(&self, output: &OutputSettings) {
        let (sinks, errors) = Sinks::start(
            output,
            &self.shared.metrics,
            &self.shared.redactor,
            &self.runtime,
        );
        for error in errors {
            let message = self.shared.redactor.redact(&error.to_string());
            tracing::error!(error = %message, "MQTT sink cannot start; results go to the other sinks");
            self.shared.state.set_error(
                ErrorKind::Config,
                AgentError::new("SinkSetupFailed", &message),
            );
        }
        self.send(Command::Sinks(sinks));
    }
}

/// Loads `request` until it loads or fails for a reason that retrying
/// cannot fix, and hands the loaded model to the frame loop.
async fn load_until_done(
    loader: Arc<ModelLoader>,
    request: ModelRequest,
    settings: RunSettings,
    generation: u64,
    commands: Sender<Command>,
    shared: Shared,
) {
    let mut delay = MODEL_RETRY_INITIAL;
    loop {
        tracing::info!(
            url = %request.redacted_url(),
            sha256 = request.sha256.as_deref().unwrap_or("none"),
            "Loading model"
        );
        let error = match loader.load(&request, settings.clone()).await {
            Ok(model) => {
                tracing::info!(
                    digest = %model.served.digest,
                    device = %model.served.device,
                    "Model loaded and warmed up; it takes over at the next frame"
                );
                let _ = commands.send(Command::Model {
                    generation,
                    model: Box::new(model),
                });
                return;
            }
            Err(error) => error,
        };

        let message = shared.redactor.redact(&error.to_string());
        shared.metrics.observe_model_load_failure(error.reason());
        shared
            .state
            .set_error(ErrorKind::Model, AgentError::new(error.reason(), &message));
        if !error.is_transient() {
            tracing::error!(
                reason = error.reason(),
                error = %message,
                "Model failed to load; the serving model, if any, stays until the config changes"
            );
            return;
        }

        tracing::warn!(
            reason = error.reason(),
            error = %message,
            retry_in_s = delay.as_secs(),
            "Model failed to load; retrying"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MODEL_RETRY_MAX);
    }
}

/// Picks the source (the node's override when there is one) and hands it
/// to the frame loop.
async fn resolve_source(
    request: SourceRequest,
    identity: Identity,
    cluster: Cluster,
    commands: Sender<Command>,
    shared: Shared,
) {
    let overridden = match &request.node_override_annotation {
        Some(annotation) => node_override(annotation, &identity, &cluster, &shared).await,
        None => None,
    };
    let Some(location) = overridden.or(request.location) else {
        let message = "the config names no source and the node has no source override annotation";
        tracing::error!("No source: {message}");
        shared
            .state
            .set_error(ErrorKind::Source, AgentError::new("SourceMissing", message));
        return;
    };

    if let SourceLocation::Url(url) = &location {
        shared.redactor.add_url(url);
    }
    let plan = SourcePlan::new(&location, request.credentials_dir.as_deref());
    let _ = commands.send(Command::Source(plan));
}

/// Reads the node's override annotation, retrying while the API fails, so
/// a node never streams the default source by mistake.
// NOTE: the annotation is read when the source setting changes (and at
// start), not watched: the agent's RBAC grants `get` on nodes only, so a
// changed annotation takes effect at the next source change or restart.
async fn node_override(
    annotation: &str,
    identity: &Identity,
    cluster: &Cluster,
    shared: &Shared,
) -> Option<SourceLocation> {
    let Some(node) = &identity.node else {
        tracing::info!(
            annotation,
            "NODE_NAME is unset, so the node's source override is not read"
        );
        return None;
    };

    let mut delay = NODE_RETRY_INITIAL;
    loop {
        match cluster.node_annotation(node, annotation).await {
            Ok(value) => {
                shared.state.clear_error(ErrorKind::NodeOverride);
                let Some(value) = value else {
                    tracing::info!(
                        node,
                        annotation,
                        "The node has no source override; using the configured source"
                    );
                    return None;
                };
                let location = SourceLocation::from_override(&value);
                if let SourceLocation::Url(url) = &location {
                    shared.redactor.add_url(url);
                }
                tracing::info!(
                    node,
                    annotation,
                    source = %shared.redactor.redact(&value),
                    "Using the node's source override"
                );
                return Some(location);
            }
            Err(error) => {
                let message = shared.redactor.redact(&format!(
                    "failed to read annotation {annotation} of node {node}: {error}"
                ));
                tracing::warn!(error = %message, retry_in_s = delay.as_secs(), "Node override unavailable; retrying");
                shared.state.set_error(
                    ErrorKind::NodeOverride,
                    AgentError::new("NodeOverrideUnavailable", &message),
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(NODE_RETRY_MAX);
            }
        }
    }
}
