package p2p

import (
	"net"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/aspen-market/aspen/protocol"
)

// Score thresholds of DefaultScoreParams.
const (
	GossipThreshold    = -10
	PublishThreshold   = -50
	GraylistThreshold  = -80
	InvalidMessageCost = -60 // weight of P4: × (invalid messages)²
)

// DefaultScoreParams returns the gossipsub peer-score parameters and
// thresholds New uses unless Config overrides them. Offers and bids are
// sparse (a few per peer per minute), so mesh-delivery-rate penalties
// (P3, P3b) are off; what matters is invalid messages (P4): one invalid
// message (weight −60, counter squared) puts the sender below the gossip
// and publish thresholds, two below the graylist threshold, where
// everything it sends is ignored. The counter decays to 1% in an hour.
// Time in mesh and first deliveries give honest peers a small positive
// score, capped so it cannot buy more than one invalid message.
// Peers sharing an IP (beyond 10) are penalised, except on loopback.
func DefaultScoreParams() (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	topic := func() *pubsub.TopicScoreParams {
		return &pubsub.TopicScoreParams{
			TopicWeight:                    1,
			TimeInMeshWeight:               0.01,
			TimeInMeshQuantum:              time.Second,
			TimeInMeshCap:                  600, // up to +6 after 10 minutes
			FirstMessageDeliveriesWeight:   0.5,
			FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(10 * time.Minute),
			FirstMessageDeliveriesCap:      20, // up to +10
			InvalidMessageDeliveriesWeight: InvalidMessageCost,
			InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
		}
	}
	_, lo4, _ := net.ParseCIDR("127.0.0.0/8")
	_, lo6, _ := net.ParseCIDR("::1/128")
	params := &pubsub.PeerScoreParams{
		Topics: map[string]*pubsub.TopicScoreParams{
			protocol.TopicOffers: topic(),
			protocol.TopicBids:   topic(),
		},
		TopicScoreCap:               30,
		AppSpecificScore:            func(peer.ID) float64 { return 0 },
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -5,
		IPColocationFactorThreshold: 10,
		IPColocationFactorWhitelist: []*net.IPNet{lo4, lo6},
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               pubsub.DefaultDecayInterval,
		DecayToZero:                 pubsub.DefaultDecayToZero,
		RetainScore:                 30 * time.Minute,
	}
	thresholds := &pubsub.PeerScoreThresholds{
		GossipThreshold:             GossipThreshold,
		PublishThreshold:            PublishThreshold,
		GraylistThreshold:           GraylistThreshold,
		AcceptPXThreshold:           20,
		OpportunisticGraftThreshold: 2,
	}
	return params, thresholds
}
