"""The runtime every formcheck deployable imports: paths, settings, the broker connection, queues, logging."""
