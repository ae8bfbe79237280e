//! `inventory`: stock. Extends `Product` with `inStock` and a
//! `shippingEstimate` that `@requires(fields: "price weight")`.

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject,
};

#[derive(SimpleObject, Clone)]
#[graphql(extends, complex)]
pub struct Product {
    #[graphql(external)]
    upc: String,
    #[graphql(external)]
    weight: Option<i64>,
    #[graphql(external)]
    price: Option<i64>,
    in_stock: Option<bool>,
}

/// Which of the benchmark's products are in stock, by upc.
pub const IN_STOCK: [(&str, bool); 9] = [
    ("1", true),
    ("2", false),
    ("3", false),
    ("4", false),
    ("5", true),
    ("6", true),
    ("7", true),
    ("8", false),
    ("9", true),
];

/// Free above 1000; otherwise half the weight; unknown without both.
pub fn shipping_estimate(price: Option<i64>, weight: Option<i64>) -> Option<i64> {
    let price = price?;
    if price > 1000 {
        return Some(0);
    }
    weight.map(|w| w / 2)
}

#[ComplexObject]
impl Product {
    #[graphql(requires = "price weight")]
    async fn shipping_estimate(&self) -> Option<i64> {
        shipping_estimate(self.price, self.weight)
    }
}

pub struct Query;

#[Object(extends)]
impl Query {
    /// The representation carries `price` and `weight` (`@requires`).
    #[graphql(entity)]
    async fn find_product_by_upc(
        &self,
        #[graphql(key)] upc: String,
        price: Option<i64>,
        weight: Option<i64>,
    ) -> Option<Product> {
        let in_stock = IN_STOCK.iter().find(|(u, _)| *u == upc)?.1;
        Some(Product {
            upc,
            weight,
            price,
            in_stock: Some(in_stock),
        })
    }
}

pub type InventorySchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> InventorySchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}
