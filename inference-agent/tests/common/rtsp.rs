//! A loopback RTSP server for the stream tests, on GStreamer's RTSP server
//! library: a live test pattern at 10 frames per second, with optional basic
//! authentication, a transport restriction, and a gate that stops the video
//! while the RTSP session stays up, like a camera whose encoder hangs.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer_rtsp_server as rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use rtsp_server::glib;
use rtsp_server::gst;
use rtsp_server::gst_rtsp::RTSPLowerTrans;

/// Path of the test stream.
pub const MOUNT: &str = "/camera";

/// Frame size of the test stream.
pub const WIDTH: u32 = 320;
pub const HEIGHT: u32 = 240;

/// How long the server thread may take to close its clients and stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Video encoding of the test stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Codec {
    /// H.264 with a key frame every second, like most IP cameras.
    #[default]
    H264,
    /// Motion JPEG, where every frame decodes on its own.
    Jpeg,
}

/// Settings of a test server.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub codec: Codec,
    /// Transports the server accepts; `None` accepts UDP and TCP.
    pub transport: Option<RTSPLowerTrans>,
    /// Username and password required through basic authentication.
    pub credentials: Option<(String, String)>,
}

/// A running server; dropping it closes every client and stops it.
pub struct RtspServer {
    port: u16,
    server: rtsp_server::RTSPServer,
    context: glib::MainContext,
    main_loop: glib::MainLoop,
    source_id: Option<glib::SourceId>,
    thread: Option<JoinHandle<()>>,
    gates: Arc<Mutex<Vec<gst::Element>>>,
    stalled: Arc<AtomicBool>,
}

impl RtspServer {
    pub fn start(config: ServerConfig) -> Self {
        gst::init().expect("GStreamer initialises");

        let server = rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&config.port.to_string());

        let gates = Arc::new(Mutex::new(Vec::new()));
        let stalled = Arc::new(AtomicBool::new(false));
        let factory = media_factory(&config, gates.clone(), stalled.clone());
        server
            .mount_points()
            .expect("the server has mount points")
            .add_factory(MOUNT, factory);
        if let Some((username, password)) = &config.credentials {
            server.set_auth(Some(&basic_auth(username, password)));
        }

        let context = glib::MainContext::new();
        let source_id = server
            .attach(Some(&context))
            .expect("the server binds 127.0.0.1");
        let port = u16::try_from(server.bound_port()).expect("a bound port");

        let main_loop = glib::MainLoop::new(Some(&context), false);
        let thread = {
            let context = context.clone();
            let main_loop = main_loop.clone();
            std::thread::Builder::new()
                .name("rtsp-test-server".to_owned())
                .spawn(move || {
                    // Clients attach to the thread-default context, so it must
                    // be the server's own.
                    context
                        .with_thread_default(|| main_loop.run())
                        .expect("the server thread owns its context");
                })
                .expect("server thread starts")
        };

        Self {
            port,
            server,
            context,
            main_loop,
            source_id: Some(source_id),
            thread: Some(thread),
            gates,
            stalled,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtsp://127.0.0.1:<port>/camera`.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}{MOUNT}", self.port)
    }

    /// Stops the video of every session, now and for sessions set up later,
    /// while the server keeps responding to RTSP requests.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        for gate in self.gates.lock().expect("gates lock").iter() {
            gate.set_property("drop", true);
        }
    }

    /// Closes every client connection and session, then stops the server
    /// thread, like a camera that is switched off.
    pub fn shut_down(mut self) {
        self.shut_down_in_place();
    }

    fn shut_down_in_place(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };

        let (done_sender, done) = mpsc::channel();
        let server = self.server.clone();
        let listener = self
            .source_id
            .take()
            .and_then(|id| self.context.find_source_by_id(&id));
        self.context.invoke(move || {
            // Stops accepting connections; the SourceId belongs to this
            // context, not the default one that `SourceId::remove` searches.
            if let Some(listener) = listener {
                listener.destroy();
            }
            server.client_filter(Some(&mut |_, _| rtsp_server::RTSPFilterResult::Remove));
            if let Some(pool) = server.session_pool() {
                pool.filter(Some(&mut |_, _| rtsp_server::RTSPFilterResult::Remove));
            }
            let _ = done_sender.send(());
        });
        done.recv_timeout(SHUTDOWN_TIMEOUT)
            .expect("the server closes its clients");

        self.main_loop.quit();
        thread.join().expect("the server thread ends");
        for gate in self.gates.lock().expect("gates lock").drain(..) {
            drop(gate);
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.shut_down_in_place();
    }
}

fn media_factory(
    config: &ServerConfig,
    gates: Arc<Mutex<Vec<gst::Element>>>,
    stalled: Arc<AtomicBool>,
) -> rtsp_server::RTSPMediaFactory {
    let encode = match config.codec {
        Codec::H264 => {
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 \
             ! rtph264pay name=pay0 pt=96 config-interval=-1"
        }
        Codec::Jpeg => "jpegenc ! rtpjpegpay name=pay0 pt=26",
    };
    let launch = format!(
        "( videotestsrc is-live=true pattern=ball \
         ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate=10/1 \
         ! valve name=gate ! {encode} )"
    );

    let factory = rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(&launch);
    // Every client gets its own pipeline, so a reconnect starts fresh.
    factory.set_shared(false);
    if let Some(transport) = config.transport {
        factory.set_protocols(transport);
    }
    if config.credentials.is_some() {
        factory.add_role_from_structure(
            &gst::Structure::builder("viewer")
                .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                .build(),
        );
    }

    factory.connect_media_configure(move |_, media| {
        let Some(gate) = media
            .element()
            .downcast_ref::<gst::Bin>()
            .and_then(|bin| bin.by_name("gate"))
        else {
            return;
        };
        gate.set_property("drop", stalled.load(Ordering::SeqCst));
        gates.lock().expect("gates lock").push(gate);
    });
    factory
}

/// Basic authentication with one user in the `viewer` role; requests
/// without valid credentials get 401.
fn basic_auth(username: &str, password: &str) -> rtsp_server::RTSPAuth {
    let auth = rtsp_server::RTSPAuth::new();
    let token = rtsp_server::RTSPToken::builder()
        .field(rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        .build();
    auth.add_basic(
        &rtsp_server::RTSPAuth::make_basic(username, password),
        &token,
    );
    auth
}
