//! The console's pages: HTML rendered from the templates of `assets/` (embedded in the
//! binary, HTML-escaped by [`minijinja`]'s auto-escaping for `.html` names), and the script
//! they load.

use std::sync::LazyLock;

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};

use super::Console;
use super::session::ConsoleUser;

/// The templates, parsed once.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("layout.html", include_str!("assets/layout.html")),
        ("login.html", include_str!("assets/login.html")),
        ("group.html", include_str!("assets/group.html")),
        ("approvals.html", include_str!("assets/approvals.html")),
        ("tasks.html", include_str!("assets/tasks.html")),
        ("task.html", include_str!("assets/task.html")),
        ("dead_letters.html", include_str!("assets/dead_letters.html")),
        ("topologies.html", include_str!("assets/topologies.html")),
    ] {
        env.add_template(name, source).expect("the console's templates parse (a unit test renders each)");
    }
    env
});

/// The console's script (`GET /console/assets/console.js`).
const SCRIPT: &str = include_str!("assets/console.js");

fn render(name: &str, ctx: minijinja::Value) -> Response {
    match TEMPLATES.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

/// The login page, with `error` above the form when a login failed.
pub(super) fn login_page(error: Option<&str>) -> Response {
    render("login.html", context! { error })
}

/// `GET /console/login`.
pub(super) async fn login() -> Response {
    login_page(None)
}

/// A page of a logged-in user: `template` with the layout's context (the group, the user,
/// the CSRF token, which `nav` entry is current) and `extra`.
pub(super) fn page(
    console: &Console,
    user: &ConsoleUser,
    template: &str,
    nav: &str,
    extra: minijinja::Value,
) -> Response {
    render(
        template,
        context! {
            group => &*console.group,
            page => nav,
            user => &user.identity.name,
            sender_id => &user.identity.sender_id,
            csrf => &user.csrf,
            ..extra
        },
    )
}

/// `GET /console/`: the group's live members.
pub(super) async fn group(State(console): State<Console>, Extension(user): Extension<ConsoleUser>) -> Response {
    page(&console, &user, "group.html", "group", context! {})
}

/// `GET /console/approvals`: the pending approval requests, to approve or reject.
pub(super) async fn approvals(State(console): State<Console>, Extension(user): Extension<ConsoleUser>) -> Response {
    let approver = console.approvers.contains(&user.identity.sender_id);
    page(&console, &user, "approvals.html", "approvals", context! { approver })
}

/// `GET /console/assets/console.js`.
pub(super) async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_escapes_what_it_is_given() {
        let html = TEMPLATES
            .get_template("group.html")
            .unwrap()
            .render(context! { group => "<g>", page => "group", user => "o\"ps", sender_id => "s", csrf => "c0ffee" })
            .unwrap();
        assert!(html.contains("&lt;g&gt;") && !html.contains("<g>"), "{html}");
        assert!(html.contains(r#"<meta name="csrf-token" content="c0ffee">"#), "{html}");
        assert!(html.contains(r#"<script src="/console/assets/console.js" defer></script>"#), "{html}");
        let approvals = |approver: bool| {
            let ctx =
                context! { group => "g", page => "approvals", user => "u", sender_id => "s<1>", csrf => "c", approver };
            TEMPLATES.get_template("approvals.html").unwrap().render(ctx).unwrap()
        };
        assert!(approvals(true).contains(r#"<table id="approvals">"#));
        let refused = approvals(false);
        assert!(refused.contains("s&lt;1&gt; is not an approver") && !refused.contains("<table"), "{refused}");
        let html = TEMPLATES.get_template("login.html").unwrap().render(context! { error => "<b>x</b>" }).unwrap();
        assert!(html.contains("&lt;b&gt;x") && !html.contains("<b>"), "{html}");
        assert!(html.contains(r#"<form method="post" action="/console/login""#), "{html}");
    }
}
