"""The store: content-addressed Arrow artifacts and resumable shards (:mod:`.artifacts`), the one
atomic writer (:mod:`.atomic`) and a file lock (:mod:`.lock`)."""
