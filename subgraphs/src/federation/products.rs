//! `products`: the catalog. `Product @key(fields: "upc")`; `topProducts(first: Int = 5)`.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject};

#[derive(SimpleObject, Clone)]
pub struct Product {
    upc: String,
    name: Option<String>,
    price: Option<i64>,
    weight: Option<i64>,
}

/// The benchmark's nine products: upc, name, price, weight.
pub const PRODUCTS: [(&str, &str, i64, i64); 9] = [
    ("1", "Table", 899, 100),
    ("2", "Couch", 1299, 1000),
    ("3", "Glass", 15, 20),
    ("4", "Chair", 499, 100),
    ("5", "TV", 1299, 1000),
    ("6", "Lamp", 6999, 300),
    ("7", "Grill", 3999, 2000),
    ("8", "Fridge", 100_000, 6000),
    ("9", "Sofa", 9999, 800),
];

fn product(row: &(&str, &str, i64, i64)) -> Product {
    Product {
        upc: row.0.to_owned(),
        name: Some(row.1.to_owned()),
        price: Some(row.2),
        weight: Some(row.3),
    }
}

pub struct Query;

#[Object(extends)]
impl Query {
    /// The first `first` products of the catalog.
    async fn top_products(
        &self,
        #[graphql(default = 5)] first: Option<i32>,
    ) -> Option<Vec<Option<Product>>> {
        let n = usize::try_from(first.unwrap_or(5)).unwrap_or(0);
        Some(PRODUCTS.iter().take(n).map(|p| Some(product(p))).collect())
    }

    #[graphql(entity)]
    async fn find_product_by_upc(&self, upc: String) -> Option<Product> {
        PRODUCTS.iter().find(|p| p.0 == upc).map(product)
    }
}

pub type ProductsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> ProductsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}
