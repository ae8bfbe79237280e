mod dataset;
mod log;
mod signed_urls;
