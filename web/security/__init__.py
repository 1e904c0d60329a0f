"""Who may call: credentials and signed agent tokens (auth), client networks and throttles (netpolicy)."""
