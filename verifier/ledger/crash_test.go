package ledger

func crashChild(dir string) int { return 0 }
