//! The shop's small fixed catalogue.

use serde::Serialize;

/// A product's id, what the cart keeps in the session.
pub type ProductId = u32;

/// One product.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Product {
    pub id: ProductId,
    pub name: &'static str,
    pub description: &'static str,
    /// The price in cents, to keep money out of floating point.
    pub price_cents: u32,
}

const PRODUCTS: &[Product] = &[
    Product {
        id: 1,
        name: "Wool coat",
        description: "Charcoal, warm, and checked in by half the city every winter.",
        price_cents: 18_900,
    },
    Product {
        id: 2,
        name: "Umbrella",
        description: "Opens in one click; never left behind again.",
        price_cents: 2_400,
    },
    Product {
        id: 3,
        name: "Silk scarf",
        description: "Light enough for spring, loud enough for a gala.",
        price_cents: 4_500,
    },
    Product {
        id: 4,
        name: "Leather gloves",
        description: "Lined with cashmere; touchscreen fingertips.",
        price_cents: 6_900,
    },
    Product {
        id: 5,
        name: "Felt hat",
        description: "A classic fedora with a grosgrain band.",
        price_cents: 5_900,
    },
    Product {
        id: 6,
        name: "Coat hanger",
        description: "Cedar, with a numbered brass ticket.",
        price_cents: 900,
    },
];

/// Every product, in catalogue order.
pub fn all() -> &'static [Product] {
    PRODUCTS
}

/// The product with this id.
pub fn find(id: ProductId) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

/// `1234` cents as `"12.34"`.
pub fn format_price(cents: u32) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_prices_format() {
        let mut ids: Vec<_> = all().iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all().len());
        assert!(find(2).is_some() && find(0).is_none());
        assert_eq!(format_price(18_900), "189.00");
        assert_eq!(format_price(905), "9.05");
    }
}
