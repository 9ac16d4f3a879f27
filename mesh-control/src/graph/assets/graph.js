// The service graph page: polls /graph/data and draws it.
