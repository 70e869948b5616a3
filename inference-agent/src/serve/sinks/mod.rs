//! Result sinks: JSON lines on stdout or in a file for every result, and
//! MQTT messages for results of interest under a rate cap.

pub mod lines;
pub mod mqtt;
pub mod rate;

use tokio::runtime::Handle;

use self::lines::{LineSink, LineTarget};
use self::mqtt::{MqttError, MqttSink};
use super::config::{OutputSettings, SinkSpec};
use super::redact::Redactor;
use crate::metrics::Metrics;

/// The sinks of one config version.
#[derive(Debug, Default)]
pub struct Sinks {
    lines: Vec<LineSink>,
    mqtt: Vec<MqttSink>,
}

impl Sinks {
    /// Starts every sink of `output`. An MQTT sink that cannot be set up is
    /// left out and its error returned beside the others.
    pub fn start(
        output: &OutputSettings,
        metrics: &Metrics,
        redactor: &Redactor,
        runtime: &Handle,
    ) -> (Self, Vec<MqttError>) {
        let mut sinks = Self::default();
        let mut errors = Vec::new();

        for spec in &output.sinks {
            match spec {
                SinkSpec::Stdout => sinks.lines.push(LineSink::new(LineTarget::Stdout)),
                SinkSpec::File(path) => sinks
                    .lines
                    .push(LineSink::new(LineTarget::File(path.clone()))),
                SinkSpec::Mqtt(mqtt) => match MqttSink::start(
                    mqtt,
                    output.messages_per_minute,
                    metrics.clone(),
                    redactor.clone(),
                    runtime,
                ) {
                    Ok(sink) => sinks.mqtt.push(sink),
                    Err(error) => errors.push(error),
                },
            }
        }
        (sinks, errors)
    }

    /// Writes `line` to every line sink, and to the MQTT sinks when the
    /// frame has a prediction of interest.
    pub fn publish(&mut self, line: &[u8], of_interest: bool) {
        for sink in &mut self.lines {
            sink.write(line);
        }
        if of_interest {
            for sink in &mut self.mqtt {
                sink.publish(line);
            }
        }
    }
}
