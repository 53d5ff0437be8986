//! The shopping cart: product ids in the session under `cart`.

use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cloakroom::Session;
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::JsonBody;
use crate::catalogue::{self, Product, ProductId};
use crate::csrf::{self, CsrfForm, NoFields};
use crate::error::{ApiResult, Error, PageResult};
use crate::state::AppState;
use crate::views;

/// The session key.
pub const KEY: &str = "cart";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cart", get(cart_page))
        .route("/cart/add", post(add_form))
        .route("/cart/remove", post(remove_form))
        .route("/cart/clear", post(clear_form))
        .route("/api/cart", get(api_cart).post(api_add).delete(api_clear))
        .route("/api/cart/{product_id}", delete(api_remove))
}

/// The product ids in the cart, in the order they were added.
pub fn load(session: &Session) -> Vec<ProductId> {
    session.get(KEY).ok().flatten().unwrap_or_default()
}

/// The cart's products (ids no longer in the catalogue are skipped).
pub fn lines(cart: &[ProductId]) -> Vec<&'static Product> {
    cart.iter().filter_map(|&id| catalogue::find(id)).collect()
}

fn product(id: ProductId) -> Result<&'static Product, Error> {
    catalogue::find(id).ok_or_else(|| Error::NotFound(format!("there is no product {id}")))
}

/// Adds a product once (a second add changes nothing); `true` if it was added.
fn add(session: &Session, product: &Product) -> Result<bool, Error> {
    let mut cart = load(session);
    if cart.contains(&product.id) {
        return Ok(false);
    }
    cart.push(product.id);
    session.insert(KEY, cart)?;
    Ok(true)
}

/// Removes a product; `true` if it was there.
fn remove(session: &Session, product: &Product) -> Result<bool, Error> {
    let mut cart = load(session);
    let before = cart.len();
    cart.retain(|&id| id != product.id);
    if cart.len() == before {
        return Ok(false);
    }
    session.insert(KEY, cart)?;
    Ok(true)
}

/// `{"cart": [...], "count": n, "total_cents": n}`.
fn summary(cart: &[ProductId]) -> Value {
    let lines = lines(cart);
    let total: u32 = lines.iter().map(|p| p.price_cents).sum();
    json!({ "cart": lines, "count": lines.len(), "total_cents": total })
}

async fn cart_page(State(app): State<AppState>, session: Session) -> PageResult {
    let cart = load(&session);
    let lines = lines(&cart);
    let ctx = context! {
        csrf_token => csrf::token(&session)?,
        products => catalogue::all(),
        in_cart => cart,
        total_cents => lines.iter().map(|p| p.price_cents).sum::<u32>(),
        lines,
    };
    Ok(views::page(&app, &session, "cart.html", ctx)?)
}

#[derive(Deserialize)]
struct ProductForm {
    product_id: ProductId,
}

async fn add_form(session: Session, CsrfForm(form): CsrfForm<ProductForm>) -> PageResult<Redirect> {
    let product = product(form.product_id)?;
    if add(&session, product)? {
        session.flash("success", format!("Added {} to your cart.", product.name))?;
    } else {
        session.flash("info", format!("{} is already in your cart.", product.name))?;
    }
    Ok(Redirect::to("/cart"))
}

async fn remove_form(
    session: Session,
    CsrfForm(form): CsrfForm<ProductForm>,
) -> PageResult<Redirect> {
    let product = product(form.product_id)?;
    if remove(&session, product)? {
        session.flash(
            "success",
            format!("Removed {} from your cart.", product.name),
        )?;
    }
    Ok(Redirect::to("/cart"))
}

async fn clear_form(session: Session, CsrfForm(_): CsrfForm<NoFields>) -> PageResult<Redirect> {
    session.remove(KEY);
    session.flash("success", "Your cart is empty now.")?;
    Ok(Redirect::to("/cart"))
}

async fn api_cart(session: Session) -> Json<Value> {
    Json(summary(&load(&session)))
}

#[derive(Deserialize)]
struct AddToCart {
    product_id: ProductId,
}

async fn api_add(session: Session, JsonBody(body): JsonBody<AddToCart>) -> ApiResult<Json<Value>> {
    add(&session, product(body.product_id)?)?;
    Ok(Json(summary(&load(&session))))
}

async fn api_remove(session: Session, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = id
        .parse()
        .map_err(|_| Error::BadRequest(format!("{id:?} is not a product id")))?;
    remove(&session, product(id)?)?;
    Ok(Json(summary(&load(&session))))
}

async fn api_clear(session: Session) -> Json<Value> {
    session.remove(KEY);
    let mut body = summary(&[]);
    body["message"] = json!("Cart cleared");
    Json(body)
}
