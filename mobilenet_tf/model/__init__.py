"""The network: the paper's architecture table, the Keras builder, its fused batch norm,
pretrained-weight loading and the paper's cost counting (mult-adds, parameters)."""
