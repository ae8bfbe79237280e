//! `accounts`: users. `User @key(fields: "id")`; `me`, `user(id)`, `users`.

use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema, SimpleObject, ID};

#[derive(SimpleObject, Clone)]
pub struct User {
    id: ID,
    name: Option<String>,
    /// `reviews` provides it with a review's author (Federation 2 wants it shareable).
    #[graphql(shareable)]
    username: Option<String>,
    birthday: Option<i32>,
}

/// The benchmark's six users.
pub const USERS: [(&str, &str, &str); 6] = [
    ("1", "Uri Goldshtein", "urigo"),
    ("2", "Dotan Simha", "dotansimha"),
    ("3", "Kamil Kisiela", "kamilkisiela"),
    ("4", "Arda Tanrikulu", "ardatan"),
    ("5", "Gil Gardosh", "gilgardosh"),
    ("6", "Laurin Quast", "laurin"),
];

fn user(row: &(&str, &str, &str)) -> User {
    User {
        id: ID(row.0.to_owned()),
        name: Some(row.1.to_owned()),
        username: Some(row.2.to_owned()),
        birthday: Some(1_234_567_890),
    }
}

fn find(id: &str) -> Option<User> {
    USERS.iter().find(|u| u.0 == id).map(user)
}

pub struct Query;

#[Object(extends)]
impl Query {
    /// The signed-in user (always the first).
    async fn me(&self) -> Option<User> {
        find("1")
    }

    async fn user(&self, id: ID) -> Option<User> {
        find(&id)
    }

    async fn users(&self) -> Option<Vec<Option<User>>> {
        Some(USERS.iter().map(|u| Some(user(u))).collect())
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> Option<User> {
        find(&id)
    }
}

pub type AccountsSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema() -> AccountsSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish()
}
