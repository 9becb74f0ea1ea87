"""Training: the mixture of rows, batches without shortcuts, the contrastive loss and the trainer."""
