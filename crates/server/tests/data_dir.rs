//! Opening a data directory: the whole of it for serving and publishing, only its database
//! for the administration commands.

use ferry_server::DataDir;

#[tokio::test]
async fn a_database_only_open_leaves_no_artifact_store_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    let db = DataDir::open_database(&path, None).await.unwrap();
    db.create_enrollment_token(&Default::default())
        .await
        .unwrap();
    assert!(path.join("ferry.db").is_file(), "the database is made");
    assert!(
        !path.join("artifacts").exists(),
        "no store directory is made"
    );
    // The whole open of the same directory makes the store beside that database.
    DataDir::open(&path).await.unwrap();
    assert!(path.join("artifacts").is_dir());
}
