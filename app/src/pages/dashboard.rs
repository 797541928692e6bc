use leptos::prelude::*;

use super::sharing::SharingSection;
use super::usage::UsageSection;
use super::{action_error, viewer_resource, Frame};
use crate::api::{workspace_status, GetWorkspaceCredentials, RegenerateCredential, WorkspaceAction as WorkspaceActionFn};
use crate::model::{StepState, WorkspaceState, WorkspaceView};

#[component]
pub fn DashboardPage() -> impl IntoView {
    let viewer = viewer_resource();
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match viewer.await {
                    Ok(Some(user)) => {
                        let name = user.username.clone();
                        view! {
                            <Frame user=Some(user)>
                                <section class="card" id="dashboard">
                                    <h1 id="greeting">"Hello, " {name} "!"</h1>
                                    <p class="muted">"Your workspace is a whole machine: desktop, SSH, VS Code, Jupyter, Docker."</p>
                                </section>
                                <WorkspaceCard/>
                                <SharingSection/>
                                <UsageSection user=None/>
                            </Frame>
                        }.into_any()
                    }
                    _ => view! {
                        <Frame user=None>
                            <section class="card narrow"><p>"Please " <a href="/login">"log in"</a> "."</p></section>
                        </Frame>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn WorkspaceCard() -> impl IntoView {
    let act = ServerAction::<WorkspaceActionFn>::new();
    // The first state comes from the server function (rendered on the server); later ones are
    // pushed by the server (see `live`), with a slow poll of Berth while the push channel is down.
    let status = Resource::new(move || act.version().get(), |_| workspace_status());
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| live::follow(status));
    view! {
        <section class="card" id="workspace">
            <h2>"Workspace"</h2>
            {action_error(move || act.value().get())}
            <Transition fallback=|| view! { <p class="muted">"Asking Docker…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(view) => view! { <WorkspaceDetails view=view act=act/> }.into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

fn uptime(seconds: Option<i64>) -> Option<String> {
    let minutes = seconds? / 60;
    Some(if minutes < 60 { format!("up {minutes} min") } else { format!("up {} h {} min", minutes / 60, minutes % 60) })
}

#[component]
fn WorkspaceDetails(view: WorkspaceView, act: ServerAction<WorkspaceActionFn>) -> impl IntoView {
    let state = view.state;
    let button = move |action: &'static str, label: &'static str, primary: bool| {
        view! {
            <ActionForm action=act attr:class="inline">
                <input type="hidden" name="action" value=action/>
                <button type="submit" class=if primary { "primary" } else { "" } data-action=action>{label}</button>
            </ActionForm>
        }
    };
    let controls = match state {
        WorkspaceState::Absent | WorkspaceState::Stopped | WorkspaceState::Error => {
            view! { <div class="controls">{button("start", "Start workspace", true)}</div> }.into_any()
        }
        WorkspaceState::Running => view! {
            <div class="controls">
                {button("stop", "Stop", false)}
                {button("restart", "Restart", false)}
            </div>
        }
        .into_any(),
        WorkspaceState::Starting | WorkspaceState::Stopping => {
            view! { <div class="controls"><span class="muted">"Working…"</span></div> }.into_any()
        }
    };
    let banner = view.engine_problem.clone().map(|_| {
        view! {
            <p class="banner" role="alert" id="engine-banner">
                "The Docker engine is not reachable right now. Your files are safe; Berth reconnects by itself."
            </p>
        }
    });
    let error = view.error.clone().map(|e| view! { <p class="error" id="workspace-error">{e}</p> });
    let steps = (!view.steps.is_empty()).then(|| {
        let items = view
            .steps
            .iter()
            .map(|s| {
                let (mark, class) = match s.state {
                    StepState::Pending => ("○", "pending"),
                    StepState::Running => ("◐", "running"),
                    StepState::Done => ("●", "done"),
                    StepState::Failed => ("✕", "failed"),
                };
                // A failed service's detail carries its last log lines: kept as lines.
                let detail = s.detail.clone().map(|d| match d.split_once('\n') {
                    Some((first, log)) => view! {
                        <span class="muted">" — " {first.to_string()}</span>
                        <pre class="step-log">{log.to_string()}</pre>
                    }
                    .into_any(),
                    None => view! { <span class="muted">" — " {d}</span> }.into_any(),
                });
                // data-state and data-step are for machines (tests, scripts); the mark is for people.
                view! {
                    <li class=format!("step {class}") data-state=class data-step=s.name.clone()>
                        {mark} " " {s.name.clone()} {detail}
                    </li>
                }
            })
            .collect_view();
        view! { <ul class="steps" id="workspace-steps">{items}</ul> }
    });
    let node = view.node.clone();
    let access = view.ports.map(|p| {
        let user = view.username.clone();
        let host = view.ssh_host.clone();
        let command = format!("ssh -p {} {}@{}", p.ssh, user, host);
        let snippet = format!(
            "Host berth\n    HostName {host}\n    Port {}\n    User {user}\n    ForwardX11 yes\n",
            p.ssh
        );
        // VNC and RDP stay on the server's loopback unless the admin published them: an SSH
        // tunnel brings them to the user's own machine.
        let desktops = format!(
            "{}{}",
            if p.vnc_public { format!(" · VNC {host}:{}", p.vnc) } else { String::new() },
            if p.rdp_public { format!(" · RDP {host}:{}", p.rdp) } else { String::new() },
        );
        let forwards: Vec<String> = [(!p.vnc_public).then(|| "-L 5901:localhost:5901"), (!p.rdp_public).then(|| "-L 3389:localhost:3389")]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect();
        let tunnel = (!forwards.is_empty()).then(|| {
            let tunnel_command = format!("ssh -p {} {} {}@{}", p.ssh, forwards.join(" "), user, host);
            view! {
                <label>
                    "Desktop through SSH (then open VNC localhost:5901 or RDP localhost:3389)"
                    <input type="text" readonly id="tunnel-command" value=tunnel_command onfocus="this.select()"/>
                </label>
            }
        });
        let web_warning = p.web_published.then(|| {
            view! { <p class="banner">"Web ports are published directly on this server: they bypass the portal's login."</p> }
        });
        view! {
            <div class="access">
                <label>
                    "SSH"
                    <span class="copy-row">
                        <input type="text" readonly id="ssh-command" value=command.clone() onfocus="this.select()"/>
                        <button type="button" class="small" onclick="navigator.clipboard && navigator.clipboard.writeText(document.getElementById('ssh-command').value)">"Copy"</button>
                    </span>
                </label>
                <p class="muted">"SSH port " <strong id="ssh-port">{p.ssh}</strong>
                    {desktops}{node.map(|n| format!(" · on node {n}"))}</p>
                {tunnel}
                <details>
                    <summary>"~/.ssh/config snippet"</summary>
                    <pre id="ssh-config">{snippet}</pre>
                </details>
                {web_warning}
            </div>
        }
    });
    let running = state == WorkspaceState::Running;
    let launch = (!view.apps.is_empty() || view.guacamole).then(|| {
        let links = view
            .apps
            .iter()
            .map(|app| {
                if running {
                    view! { <a class="button" href=app.url.clone() target="_blank" rel="noopener" data-app=app.key.clone()>{app.label.clone()}</a> }.into_any()
                } else {
                    view! { <span class="button disabled" title="Start the workspace first" data-app=app.key.clone()>{app.label.clone()}</span> }.into_any()
                }
            })
            .collect_view();
        let guacamole = view.guacamole.then(|| {
            if running {
                view! { <a class="button" href="/desktop/guacamole" target="_blank" rel="external noopener" data-app="guacamole">"Desktop (Guacamole)"</a> }.into_any()
            } else {
                view! { <span class="button disabled" data-app="guacamole">"Desktop (Guacamole)"</span> }.into_any()
            }
        });
        view! { <div class="launch" id="launch">{links}{guacamole}</div> }
    });
    let limits = view.limits.clone();
    let cpus = if limits.cpus > 0.0 { format!("{} CPUs", limits.cpus) } else { "all CPUs".into() };
    // With host root (privileged: every /dev/nvidia* is there; capabilities: mknod) a GPU list
    // is a wish, not a limit.
    let gpu_note = match &view.isolation {
        Some(i) if i.host_root && limits.gpus != "none" && limits.gpus != "all" => " (not enforced in this isolation mode: every GPU can be reached)",
        _ => "",
    };
    let isolation = view.isolation.clone().map(|i| {
        let docker = if i.docker_inside { "on" } else { "off" };
        view! {
            <p class="muted" id="isolation" data-mode=i.mode.clone() data-docker-inside=docker>
                {format!("Isolation: {} · Docker inside: {docker}", i.mode)}
            </p>
        }
    });
    let reset = matches!(state, WorkspaceState::Running | WorkspaceState::Stopped).then(|| {
        view! {
            <details class="danger-zone">
                <summary>"Reset workspace…"</summary>
                <p class="muted">"Removes the container and creates it afresh from the image. Your home directory is kept; anything installed outside it is lost."</p>
                <ActionForm action=act attr:class="inline" attr:id="reset-form">
                    <input type="hidden" name="action" value="reset"/>
                    <label class="check"><input type="checkbox" name="confirm" value="yes" required/> "I understand"</label>
                    <button type="submit" class="danger" data-action="reset">"Reset"</button>
                </ActionForm>
            </details>
        }
    });
    view! {
        {banner}
        <p>
            <span class=format!("badge {}", state.as_str()) id="workspace-state" data-state=state.as_str()>{state.as_str()}</span>
            " " <span class="muted">{uptime(view.uptime_seconds)}</span>
            {view.ready.then(|| view! { " " <span class="badge ready" id="workspace-ready" title="Every service of the workspace answers">"ready"</span> })}
            {view.drift.then(|| view! { <span class="badge pending" title="Settings changed; applied at the next restart">"update pending"</span> })}
        </p>
        {controls}
        {error}
        {steps}
        {launch}
        {access}
        <p class="muted">{format!("Memory {} GiB (reserved {} GiB, ", limits.memory_limit_gib, limits.memory_reservation_gib)}
            <span id="swap">{limits.swap_summary.clone()}</span>{format!(") · {cpus} · ")}
            <span id="gpus" data-gpus=limits.gpus.clone()>{limits.gpus_summary.clone()}</span>{gpu_note}</p>
        {isolation}
        <Credentials/>
        {reset}
    }
}

#[component]
fn Credentials() -> impl IntoView {
    let reveal = ServerAction::<GetWorkspaceCredentials>::new();
    let regenerate = ServerAction::<RegenerateCredential>::new();
    Effect::new(move |_| {
        if regenerate.version().get() > 0 {
            reveal.dispatch(GetWorkspaceCredentials {});
        }
    });
    view! {
        <details class="credentials" on:toggle=move |_| { reveal.dispatch(GetWorkspaceCredentials {}); }>
            <summary>"Passwords for SSH and VNC"</summary>
            {move || reveal.value().get().map(|r| match r {
                Ok(c) => view! {
                    <p>"SSH / sudo: " <code id="ssh-password">{c.ssh_password}</code></p>
                    <p>"VNC: " <code id="vnc-password">{c.vnc_password}</code></p>
                }.into_any(),
                Err(e) => view! { <p class="muted">{e.to_string()}</p> }.into_any(),
            })}
            <ActionForm action=regenerate attr:class="inline">
                <input type="hidden" name="which" value="ssh"/>
                <button type="submit" class="small">"New SSH password"</button>
            </ActionForm>
            <ActionForm action=regenerate attr:class="inline">
                <input type="hidden" name="which" value="vnc"/>
                <button type="submit" class="small">"New VNC password"</button>
            </ActionForm>
            {move || regenerate.value().get().and_then(|r| r.err()).map(|e| view! { <p class="error">{e.to_string()}</p> })}
            <p class="muted">"A new password applies at once; a stopped workspace gets it when it starts."</p>
        </details>
    }
}

/// The browser's end of the live-state channel: an `EventSource` on the server's
/// `/events/workspace` stream sets the card's resource from each `workspace` event. While the
/// stream is down, the card asks Berth (the `workspace_status` server function, never Docker)
/// every [`live::FALLBACK_POLL`], and a stream the browser gave up on is reopened as often.
#[cfg(feature = "hydrate")]
mod live {
    use std::cell::RefCell;
    use std::rc::{Rc, Weak};
    use std::time::Duration;

    use leptos::prelude::*;
    use leptos::wasm_bindgen::closure::Closure;
    use leptos::wasm_bindgen::JsCast;
    use web_sys::{Event, EventSource, MessageEvent};

    use crate::error::AppError;
    use crate::model::WorkspaceView;

    const STREAM: &str = "/events/workspace";
    pub const FALLBACK_POLL: Duration = Duration::from_secs(15);

    type Status = Resource<Result<WorkspaceView, AppError>>;

    #[derive(Default)]
    struct Channel {
        source: Option<EventSource>,
        // Kept alive as long as the source they are registered on.
        on_message: Option<Closure<dyn FnMut(MessageEvent)>>,
        on_open: Option<Closure<dyn FnMut(Event)>>,
        on_error: Option<Closure<dyn FnMut(Event)>>,
        poll: Option<IntervalHandle>,
        reopen: Option<TimeoutHandle>,
    }

    impl Channel {
        fn close_source(&mut self) {
            if let Some(source) = self.source.take() {
                source.close();
            }
            self.on_message = None;
            self.on_open = None;
            self.on_error = None;
        }

        fn shut(&mut self) {
            self.close_source();
            if let Some(poll) = self.poll.take() {
                poll.clear();
            }
            if let Some(reopen) = self.reopen.take() {
                reopen.clear();
            }
        }
    }

    // However the card goes away, the browser stops calling closures that are gone.
    impl Drop for Channel {
        fn drop(&mut self) {
            self.shut();
        }
    }

    /// Follows the caller's workspace until the card goes away.
    pub fn follow(status: Status) {
        let channel = Rc::new(RefCell::new(Channel::default()));
        open(&channel, status);
        let held = StoredValue::new_local(channel);
        on_cleanup(move || {
            if let Some(channel) = held.try_get_value() {
                channel.borrow_mut().shut();
            }
        });
    }

    fn open(channel: &Rc<RefCell<Channel>>, status: Status) {
        let Ok(source) = EventSource::new(STREAM) else {
            fall_back(channel, status, true);
            return;
        };
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(text) = event.data().as_string() else { return };
            let Ok(view) = leptos::serde_json::from_str::<WorkspaceView>(&text) else { return };
            // The stream starts with the current state, which the card usually shows already.
            let same = status.with_untracked(|current| matches!(current, Some(Ok(shown)) if *shown == view));
            if !same {
                status.set(Some(Ok(view)));
            }
        });
        let weak: Weak<RefCell<Channel>> = Rc::downgrade(channel);
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if let Some(channel) = weak.upgrade() {
                if let Some(poll) = channel.borrow_mut().poll.take() {
                    poll.clear();
                }
            }
        });
        let weak: Weak<RefCell<Channel>> = Rc::downgrade(channel);
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            let Some(channel) = weak.upgrade() else { return };
            // CONNECTING: the browser retries by itself. CLOSED: it gave up (an answer that was
            // not a stream, such as a proxy's 502): open a new one later.
            let closed = channel.borrow().source.as_ref().is_none_or(|s| s.ready_state() == EventSource::CLOSED);
            fall_back(&channel, status, closed);
        });
        let _ = source.add_event_listener_with_callback("workspace", on_message.as_ref().unchecked_ref());
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let mut c = channel.borrow_mut();
        c.source = Some(source);
        c.on_message = Some(on_message);
        c.on_open = Some(on_open);
        c.on_error = Some(on_error);
    }

    /// Polls Berth while the stream is down; `reopen`: the stream is gone for good, open another
    /// one after a while (later, never from inside one of its own callbacks).
    fn fall_back(channel: &Rc<RefCell<Channel>>, status: Status, reopen: bool) {
        let mut c = channel.borrow_mut();
        if c.poll.is_none() {
            c.poll = set_interval_with_handle(move || status.refetch(), FALLBACK_POLL).ok();
        }
        if reopen && c.reopen.is_none() {
            let weak = Rc::downgrade(channel);
            c.reopen = set_timeout_with_handle(
                move || {
                    let Some(channel) = weak.upgrade() else { return };
                    {
                        let mut c = channel.borrow_mut();
                        c.reopen = None;
                        c.close_source();
                    }
                    open(&channel, status);
                },
                FALLBACK_POLL,
            )
            .ok();
        }
    }
}
