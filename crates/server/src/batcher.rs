//! The one shape of the server's batching tasks (the facts reader, the nonce writer, the
//! event writer): a request queues an item carrying a one-shot answer channel and waits;
//! the task takes every item queued meanwhile, runs one query for the round and answers
//! each item.

use tokio::sync::{mpsc, oneshot};

use crate::ServerError;

/// Where a batching task sends an item's answer: its result, or the round's failure.
pub(crate) type Done<T> = oneshot::Sender<Result<T, String>>;

/// Queues the item `make` builds around its answer channel and waits for the answer. A
/// stopped task (`task` names it) is `Overloaded`; a failed round is a database error.
pub(crate) async fn ask<I, T>(
    queue: &mpsc::Sender<I>,
    task: &str,
    make: impl FnOnce(Done<T>) -> I,
) -> Result<T, ServerError> {
    let (done, answer) = oneshot::channel();
    let gone = || ServerError::Overloaded {
        cause: format!("the {task} stopped"),
    };
    queue.send(make(done)).await.map_err(|_| gone())?;
    answer
        .await
        .map_err(|_| gone())?
        .map_err(|reason| ServerError::Database(sqlx::Error::Protocol(reason)))
}

/// Answers every item of `round` (emptying it): each its own answer, in order, or all the
/// round's failure.
pub(crate) fn answer_all<I, T, E: std::fmt::Display>(
    round: &mut Vec<I>,
    answers: Result<Vec<T>, E>,
    done: impl Fn(I) -> Done<T>,
) {
    match answers {
        Ok(answers) => {
            for (item, answer) in round.drain(..).zip(answers) {
                let _ = done(item).send(Ok(answer));
            }
        }
        Err(error) => {
            let reason = error.to_string();
            for item in round.drain(..) {
                let _ = done(item).send(Err(reason.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each item gets its own answer, or every item the round's failure; a task that stopped
    /// is `Overloaded`, a failed round a database error.
    #[tokio::test]
    async fn items_get_their_answers() {
        let (queue, mut rx) = mpsc::channel::<(u32, Done<u32>)>(8);
        let task = tokio::spawn(async move {
            let mut round = Vec::new();
            rx.recv_many(&mut round, 8).await;
            let answers: Result<Vec<u32>, String> = Ok(round.iter().map(|(n, _)| n * 2).collect());
            answer_all(&mut round, answers, |(_, done)| done);
            rx.recv_many(&mut round, 8).await;
            answer_all(&mut round, Err::<Vec<u32>, _>("disk full"), |(_, done)| {
                done
            });
        });
        assert_eq!(ask(&queue, "doubler", |done| (21, done)).await.unwrap(), 42);
        let failed = ask(&queue, "doubler", |done| (1, done)).await.unwrap_err();
        assert!(failed.to_string().contains("disk full"), "{failed}");
        task.await.unwrap();
        let stopped = ask(&queue, "doubler", |done| (1, done)).await.unwrap_err();
        assert!(
            matches!(stopped, ServerError::Overloaded { .. }),
            "{stopped}"
        );
        assert!(
            stopped.to_string().contains("the doubler stopped"),
            "{stopped}"
        );
    }
}
