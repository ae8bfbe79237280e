//! `reviews`: product reviews. `Review @key(fields: "id")`; extends
//! `Product` and `User` with their reviews; a review's author comes with
//! its `username` (`@provides(fields: "username")`).

use async_graphql::{
    ComplexObject, EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, ID,
};

const TEXT_0: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.";
const TEXT_1: &str = "Sed ut perspiciatis unde omnis iste natus error sit voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo. Nemo enim ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugi";
const TEXT_2: &str = "sed quia consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt. Neque porro quisquam est, qui dolorem ipsum quia dolor sit amet, consectetur, adipisci velit, sed quia non numquam eius modi tempora incidunt ut labore et dolore magnam aliquam quaerat voluptatem.";
const TEXT_3: &str = "Ut enim ad minima veniam, quis nostrum exercitationem ullam corporis suscipit laboriosam, nisi ut aliquid ex ea commodi consequatur? Quis autem";
const TEXT_4: &str = "At vero eos et accusamus et iusto odio dignissimos ducimus qui blanditiis praesentium voluptatum deleniti atque corrupti quos dolores et quas molestias excepturi sint occaecati cupiditate non provident, similique sunt in culpa qui officia deserunt mollitia animi, id est laborum et dolorum fuga. Et harum quidem rerum facilis est et expedita distinctio. Nam libero tempore, cum soluta nobis est eligendi optio cumque nihil impedit quo minus id quod maxime placeat facere possimus, omnis voluptas assumenda est, omnis dolor repellendus. Temporibus autem quibusdam et aut officiis debitis aut rerum necessitatibus saepe eveniet ut et voluptates repudiandae sint et molestiae non recusandae. Itaque earum rerum hic tenetur a sapiente delectus, ut aut reiciendis voluptatibus maiores alias consequatur aut perferendis doloribus asperiores repellat.";

/// The benchmark's eleven reviews: id, product upc, body.
pub const REVIEWS: [(&str, &str, &str); 11] = [
    ("1", "1", TEXT_0),
    ("2", "1", TEXT_1),
    ("3", "1", TEXT_2),
    ("4", "1", TEXT_3),
    ("5", "2", TEXT_0),
    ("6", "2", TEXT_1),
    ("7", "2", TEXT_2),
    ("8", "2", TEXT_3),
    ("9", "3", TEXT_3),
    ("10", "4", TEXT_3),
    ("11", "4", TEXT_4),
];

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Review {
    id: ID,
    body: Option<String>,
    product: Option<Product>,
}

#[ComplexObject]
impl Review {
    /// Every review is by the first user, as in the benchmark.
    #[graphql(provides = "username")]
    async fn author(&self) -> Option<User> {
        Some(User {
            id: ID("1".into()),
            username: Some("urigo".into()),
        })
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(extends, complex)]
pub struct User {
    #[graphql(external)]
    id: ID,
    #[graphql(external)]
    username: Option<String>,
}

#[ComplexObject]
impl User {
    /// Every user has the first two reviews, as in the benchmark.
    async fn reviews(&self) -> Option<Vec<Option<Review>>> {
        Some(REVIEWS[..2].iter().map(|r| Some(review(r))).collect())
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(extends, complex)]
pub struct Product {
    #[graphql(external)]
    upc: String,
}

#[ComplexObject]
impl Product {
    async fn reviews(&self) -> Option<Vec<Option<Review>>> {
        Some(
            REVIEWS
                .iter()
                .filter(|r| r.1 == self.upc)
                .map(|r| Some(review(r)))
                .collect(),
        )
    }
}

fn review(row: &(&str, &str, &str)) -> Review {
    Review {
        id: ID(row.0.to_owned()),
        body: Some(row.2.to_owned()),
        product: Some(Product {
            upc: row.1.to_owned(),
        }),
    }
}

pub struct Query;

#[Object(extends)]
impl Query {
    #[graphql(entity)]
    async fn find_review_by_id(&self, id: ID) -> Option<Review> {
        REVIEWS.iter().find(|r| r.0 == id.as_str()).map(review)
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> User {
        User { id, username: None }
    }

    #[graphql(entity)]
    async fn find_product_by_upc(&self, upc: String) -> Product {
        Product { upc }
    }
}

pub type ReviewsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> ReviewsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}
