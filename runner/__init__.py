"""The runner side of the contract: what a runner does with an execution context."""
