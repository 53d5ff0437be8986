//! User preferences (theme, language, notifications), kept in the session for visitors and
//! users alike. Defaults: light, Korean, notifications on.

use axum::extract::State;
use axum::response::Redirect;
use axum::routing::get;
use axum::{Json, Router};
use cloakroom::Session;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::api::JsonBody;
use crate::csrf::{self, CsrfForm};
use crate::error::{ApiResult, Error, PageResult};
use crate::state::AppState;
use crate::views;

/// The session key.
pub const KEY: &str = "preferences";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/preferences", get(form).post(save_form))
        .route("/api/preferences", get(api_get).put(api_update))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    #[default]
    Light,
    Dark,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Ko,
    En,
    Ja,
    Fr,
    De,
    Es,
}

impl Language {
    pub const ALL: [Language; 6] = [
        Language::Ko,
        Language::En,
        Language::Ja,
        Language::Fr,
        Language::De,
        Language::Es,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Language::Ko => "ko",
            Language::En => "en",
            Language::Ja => "ja",
            Language::Fr => "fr",
            Language::De => "de",
            Language::Es => "es",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::Ko => "한국어",
            Language::En => "English",
            Language::Ja => "日本語",
            Language::Fr => "Français",
            Language::De => "Deutsch",
            Language::Es => "Español",
        }
    }

    /// "Hello" in this language, for the home page.
    pub fn greeting(self) -> &'static str {
        match self {
            Language::Ko => "안녕하세요",
            Language::En => "Hello",
            Language::Ja => "こんにちは",
            Language::Fr => "Bonjour",
            Language::De => "Hallo",
            Language::Es => "Hola",
        }
    }
}

/// What is stored under [`KEY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    pub theme: Theme,
    pub language: Language,
    pub notifications: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            theme: Theme::Light,
            language: Language::Ko,
            notifications: true,
        }
    }
}

/// A `PUT /api/preferences` body: only the fields given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Changes {
    theme: Option<Theme>,
    language: Option<Language>,
    notifications: Option<bool>,
}

/// The visitor's preferences, or the defaults.
pub fn load(session: &Session) -> Preferences {
    session.get(KEY).ok().flatten().unwrap_or_default()
}

fn save(session: &Session, prefs: Preferences) -> Result<(), Error> {
    Ok(session.insert(KEY, prefs)?)
}

async fn form(State(app): State<AppState>, session: Session) -> PageResult {
    let languages: Vec<_> = Language::ALL
        .iter()
        .map(|l| context! { code => l.code(), name => l.name() })
        .collect();
    let ctx = context! {
        csrf_token => csrf::token(&session)?,
        prefs => load(&session),
        languages,
    };
    Ok(views::page(&app, &session, "preferences.html", ctx)?)
}

/// The HTML form sends every field; an unticked checkbox sends nothing.
#[derive(Deserialize)]
struct PreferencesForm {
    theme: Theme,
    language: Language,
    notifications: Option<String>,
}

async fn save_form(
    session: Session,
    CsrfForm(form): CsrfForm<PreferencesForm>,
) -> PageResult<Redirect> {
    save(
        &session,
        Preferences {
            theme: form.theme,
            language: form.language,
            notifications: form.notifications.is_some(),
        },
    )?;
    session.flash("success", "Preferences saved.")?;
    Ok(Redirect::to("/preferences"))
}

async fn api_get(session: Session) -> Json<Preferences> {
    Json(load(&session))
}

async fn api_update(
    session: Session,
    JsonBody(changes): JsonBody<Changes>,
) -> ApiResult<Json<Preferences>> {
    let mut prefs = load(&session);
    prefs.theme = changes.theme.unwrap_or(prefs.theme);
    prefs.language = changes.language.unwrap_or(prefs.language);
    prefs.notifications = changes.notifications.unwrap_or(prefs.notifications);
    save(&session, prefs)?;
    Ok(Json(prefs))
}
