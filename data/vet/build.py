#!/usr/bin/env python3
"""Build the veterinary-clinic data: SFT conversations and held-out questions on the same knowledge.

Every building block below (facts, owner questions, held-out question wordings, choices) was written by the
project team for this dataset; nothing is copied from a textbook, dataset or website. The script assembles
them deterministically (fixed seeds) into:

    sft.jsonl            chat conversations (TRL's messages format) teaching 49 facts, 4 conversations each
    questions.jsonl      held-out multiple choice: per fact, its description -> its name, and its name -> a fact
    questions_dev.jsonl  4 few-shot rows on general pet facts that neither file uses
    qa.jsonl             20 held-out question/answer pairs whose answer is a fact's name

and stops unless the held-out files share no 13-word sequence with sft.jsonl (lm-eval's decontamination rule:
lowercase, ASCII punctuation deleted, whitespace split), every line is ASCII and turns stay short.

Run:  python data/vet/build.py      (standard library only)
"""

import json
import os
import random
import string

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
SFT_SEED, MC_SEED = 20261201, 20261202  # separate generators: changing the questions leaves sft.jsonl as it is
MAX_USER_WORDS, MAX_ASSISTANT_WORDS, NGRAM = 60, 110, 13

# (name, teaching sentence, detail, advice, two owner questions, held-out cue for the name, held-out fact)
# The cue and the fact are the held-out side: written apart from the teaching text, in other words.
TOXINS = [
    ("Chocolate",
     "Chocolate is poisonous to dogs because it contains theobromine, a stimulant that dogs break down very slowly.",
     "Dark and baking chocolate are the most dangerous. Signs include vomiting, restlessness, a racing heart and tremors.",
     "Note the type and amount eaten and phone your vet straight away.",
     "My dog just ate a bar of dark chocolate. Should I worry?", "Why are cocoa treats bad for dogs?",
     "Which sweet food worries vets because of the theobromine it holds?",
     "Its theobromine builds up because a dog clears it slowly"),
    ("Grapes and raisins",
     "Grapes and raisins can cause sudden kidney failure in dogs, and no amount is known to be safe.",
     "Sultanas and currants count too. Vomiting, tiredness and producing little urine can follow within a day or two.",
     "Call your vet even if the dog ate only a few; early treatment protects the kidneys.",
     "Is it fine to share a few raisins with my spaniel?", "My puppy ate some grapes off the table. What now?",
     "A spaniel ate a handful of sultanas from a fruit cake. Which food group is the concern?",
     "Even a small handful may harm a dog's kidneys"),
    ("Xylitol",
     "Xylitol is a sugar substitute found in sugar-free gum, sweets and some peanut butters, and it is dangerous for dogs.",
     "In dogs it triggers a large insulin release, so blood sugar drops fast; larger doses can damage the liver.",
     "Check labels before sharing peanut butter, and treat any gum eaten by a dog as an emergency.",
     "My dog chewed a pack of sugar-free gum. Is that serious?", "Which peanut butter is safe for my dog's treats?",
     "What sweetener in sugar-free chewing gum can drop a dog's blood sugar?",
     "It sends a dog's blood sugar crashing down"),
    ("Lilies",
     "Lilies are highly toxic to cats: every part of the plant, even the pollen or the vase water, can cause kidney failure.",
     "True lilies and day lilies are the dangerous kinds. A cat may drool, vomit and stop eating soon after.",
     "Keep lilies out of homes with cats, and see a vet at once if a cat licks pollen from its fur.",
     "Are the flowers in my bouquet a danger to my cat?",
     "My cat has orange pollen on her face after sniffing the flowers. What should I do?",
     "Which bouquet flower can wreck a cat's kidneys through its pollen alone?",
     "Pollen groomed off a cat's fur is enough to poison it"),
    ("Onions and garlic",
     "Onions and garlic damage red blood cells in dogs and cats and can lead to anaemia.",
     "Raw, cooked and powdered forms all count, including onion powder in gravy. Pale gums, weakness and red urine may "
     "appear days later.",
     "Keep leftovers with onion or garlic away from pets and ask your vet if a large amount was eaten.",
     "Can I give my dog leftover stew with onions in it?", "Is garlic good for keeping fleas off cats?",
     "Which kitchen bulbs can break down a pet's red blood cells, even as a powder in gravy?",
     "They destroy red blood cells and can leave a pet anaemic"),
    ("Paracetamol",
     "Paracetamol, also called acetaminophen, is poisonous to cats because their livers cannot process it.",
     "A single tablet can harm a cat. It damages red blood cells so the gums turn brown or blue, and the face and paws "
     "may swell.",
     "Never give human painkillers to a pet; ask your vet for a safe medicine instead.",
     "My cat seems sore. Can I give her half a tablet from my medicine cabinet?", "Why is acetaminophen dangerous for cats?",
     "Which common human painkiller, also sold as acetaminophen, can turn a cat's gums brown?",
     "One tablet can be too much for a cat's liver"),
    ("Permethrin",
     "Permethrin is an insecticide used in some spot-on flea treatments for dogs, and it is very toxic to cats.",
     "A cat treated with a dog product, or one that cuddles a freshly treated dog, may twitch, tremble and have seizures.",
     "Only use flea products labelled for cats on cats, and wash off any dog product at once if a mistake happens.",
     "Can I split my dog's flea treatment and use some on my cat?",
     "My cat started twitching after I used a flea product on her. Why?",
     "Which dog flea insecticide makes cats tremble and seize if put on them?",
     "A dog spot-on made with it can give a cat seizures"),
    ("Antifreeze",
     "Antifreeze contains ethylene glycol, which tastes sweet to pets and causes kidney failure in small amounts.",
     "Early signs look like drunkenness: wobbling, vomiting and thirst. Within a day or two the kidneys can stop working.",
     "Mop up spills, store containers sealed, and get to a vet within hours if a pet may have drunk any.",
     "My cat was licking a green puddle under the car. Is that bad?", "Why must antifreeze be kept away from dogs?",
     "Which sweet-tasting car fluid holds ethylene glycol that can shut down a pet's kidneys?",
     "Its sweet taste tempts pets and a few licks can shut down the kidneys"),
    ("Rat poison",
     "Many rat poisons are anticoagulants that stop the blood from clotting in pets that eat them.",
     "Bleeding often shows only days later: nosebleeds, bruises, blood in urine, a cough or weakness. Vitamin K1 is the "
     "antidote.",
     "Bring the packet to the vet; treatment works best before any bleeding starts.",
     "My dog found the bait block in the shed. What happens now?", "Why would a dog bleed days after eating poison?",
     "Which garden shed bait stops blood clotting and is treated with vitamin K1?",
     "Bleeding may only begin days after it is swallowed"),
    ("Ibuprofen",
     "Ibuprofen is a human anti-inflammatory painkiller that can cause stomach ulcers and kidney damage in dogs and cats.",
     "Even a normal human dose may be too much for a small dog. Vomiting, black stools and not eating are warning signs.",
     "Do not give pets your own anti-inflammatory tablets; vets prescribe versions made for animals.",
     "Can my limping dog have one of my anti-inflammatory tablets?",
     "My dog chewed through a blister pack of pain pills. Is that an emergency?",
     "Which anti-inflammatory tablet from a human medicine cabinet can give a dog stomach ulcers?",
     "It can burn ulcers into a dog's stomach lining"),
]

INFECTIONS = [
    ("Parvovirus",
     "Parvovirus is a highly contagious virus that attacks the gut of dogs, most often unvaccinated puppies.",
     "It causes severe vomiting and bloody diarrhoea, and the virus can survive in the environment for months.",
     "Vaccinate puppies on schedule and keep them off public ground until the course is finished.",
     "Why can't my puppy go to the park before his last jab?", "What is the virus that gives puppies bloody diarrhoea?",
     "Which hardy virus gives unvaccinated puppies bloody diarrhoea and survives for months on the ground?",
     "Its virus lingers for months and strikes unvaccinated puppies"),
    ("Distemper",
     "Distemper is a serious viral disease of dogs that can affect the lungs, the gut and the nervous system.",
     "Early signs are fever and discharge from the eyes and nose; later a dog may twitch or have fits.",
     "It is one of the core vaccines every dog should have, as there is no cure for the virus itself.",
     "What does the distemper part of my dog's vaccine protect against?",
     "Our rescue dog has runny eyes and now twitches. What could that be?",
     "Which canine virus begins with eye and nose discharge and may later cause twitching?",
     "It can move from a dog's nose and eyes to its nervous system"),
    ("Rabies",
     "Rabies is a virus spread through the bite of an infected animal, and it can infect all mammals, including people.",
     "It attacks the brain and is almost always fatal once signs appear, so prevention matters.",
     "Many countries require rabies vaccination by law, and pets need it to travel across borders.",
     "Why does my dog need a rabies shot to travel abroad?", "Can people catch rabies from animals?",
     "Which bite-spread virus of mammals is nearly always deadly once signs begin?",
     "Once signs show it is almost always fatal, even for people"),
    ("Kennel cough",
     "Kennel cough is a contagious infection of the airways that spreads quickly wherever dogs gather.",
     "Bacteria such as Bordetella and several viruses cause it. The typical sign is a harsh, honking cough.",
     "Boarding kennels often ask for the vaccine, which is usually given as drops up the nose.",
     "My dog came back from boarding with a honking cough. What is it?",
     "Why does the kennel want a vaccine sprayed up my dog's nose?",
     "Which honking cough caused by Bordetella spreads where many dogs meet?",
     "Its vaccine is often given as drops into the nose"),
    ("Leptospirosis",
     "Leptospirosis is a bacterial infection spread in the urine of rats and other wildlife, often through standing water.",
     "It can damage a dog's kidneys and liver, and it can pass to people, so it is a zoonotic disease.",
     "Yearly vaccination helps, and dogs should not drink from stagnant ponds or ditches.",
     "Is it risky to let my dog drink from ditches on walks?", "Why does my dog's yearly vaccine include a bacteria shot?",
     "Which bacterial disease do dogs catch from water fouled by rat urine?",
     "Rats spread it in urine, and people can catch it too"),
    ("Feline panleukopenia",
     "Feline panleukopenia, also called feline enteritis, is the cat version of parvovirus.",
     "Kittens are hit hardest, with vomiting, diarrhoea and a collapse in white blood cells.",
     "It is a core cat vaccine, and the virus lasts a long time in the environment.",
     "What does the enteritis part of my kitten's vaccine prevent?", "Is there a parvovirus that cats can get?",
     "Which cat virus, related to canine parvo, wipes out a kitten's white blood cells?",
     "It is the cat form of parvo and empties the blood of white cells"),
    ("Feline leukaemia virus",
     "Feline leukaemia virus, or FeLV, spreads between cats through saliva during close contact such as grooming.",
     "It weakens the immune system and can lead to anaemia and cancers.",
     "Cats that go outside are often vaccinated, and a blood test is done first.",
     "Why does my vet want a blood test before my cat's leukaemia vaccine?",
     "Can my cats pass a virus to each other by sharing a water bowl?",
     "Which cat virus, passed on in saliva, weakens immunity and can lead to cancer?",
     "Cats pass it on in saliva while grooming or sharing bowls"),
    ("Cat flu",
     "Cat flu is a common upper airway illness mostly caused by feline herpesvirus and feline calicivirus.",
     "Cats sneeze, have runny eyes and nose, and calicivirus can cause mouth ulcers that stop them eating.",
     "Vaccination makes it milder, and sick cats need help to keep eating and drinking.",
     "My kitten keeps sneezing and has crusty eyes. What might it be?", "What is calicivirus in cats?",
     "Which sneezing illness of cats comes mainly from herpesvirus and calicivirus?",
     "It brings sneezing, sore eyes and sometimes mouth ulcers"),
    ("Myxomatosis",
     "Myxomatosis is a viral disease of rabbits spread by fleas and biting insects such as mosquitoes.",
     "It causes swelling around the eyes, head and genitals, and it is often fatal.",
     "Rabbits can be vaccinated, and insect control helps, even for rabbits kept indoors.",
     "My rabbit lives indoors. Does she still need the myxomatosis vaccine?", "What makes a rabbit's eyes swell shut?",
     "Which insect-borne rabbit virus swells the eyelids and head?",
     "Biting insects carry it between rabbits"),
    ("Rabbit haemorrhagic disease",
     "Rabbit haemorrhagic disease is a virus that can kill rabbits very quickly, often with no warning signs.",
     "It spreads on hay, clothing and insects as well as between rabbits, and the virus is very hardy.",
     "Vaccines cover the main strains, so rabbits should be vaccinated every year.",
     "Our neighbour's rabbit died suddenly overnight. Could mine be at risk?", "Which yearly vaccines does a pet rabbit need?",
     "Which hardy rabbit virus often causes sudden death without earlier signs?",
     "It can kill a rabbit suddenly, before anyone sees it is ill"),
]

PARASITES = [
    ("Heartworm",
     "Heartworm is a parasite spread by mosquitoes; the worms grow in the heart and the blood vessels of the lungs.",
     "Dogs may cough, tire easily and lose weight, and cats can be affected too.",
     "Monthly preventives stop it, and dogs in affected areas are given a yearly blood test.",
     "Why does my dog take a monthly pill for mosquitoes?", "What is the worm that lives in a dog's heart?",
     "Which mosquito-borne worm settles in a dog's heart and lung vessels?",
     "Mosquito bites carry it, and it grows inside the heart"),
    ("Fleas",
     "Fleas are small jumping insects that feed on blood and make pets itch.",
     "Some pets develop flea allergy dermatitis, and most of a flea problem lives in the home as eggs and larvae.",
     "Treat every pet in the house and vacuum often; fleas can also pass on tapeworm.",
     "I only see a few on my cat. Why won't the itching stop?", "What are the tiny black specks in my dog's coat?",
     "Which jumping pests that feed on blood are mostly found as eggs and larvae around the house?",
     "Most of their numbers hide in the house, not on the pet"),
    ("Ticks",
     "Ticks are small blood-feeding parasites that attach to the skin and can spread diseases such as Lyme disease.",
     "They latch on in long grass and woodland and swell as they feed.",
     "Check your pet after walks and remove ticks with a tick hook by twisting, without squeezing the body.",
     "There's a grey lump attached to my dog's ear after a hike. What is it?", "How do I safely remove a tick?",
     "Which skin-attaching parasite from long grass can pass on Lyme disease?",
     "It latches onto the skin and is best twisted off with a hook"),
    ("Roundworms",
     "Roundworms are intestinal worms that most puppies and kittens carry, often passed on from their mother.",
     "A heavy load gives a pot-bellied look and poor growth, and the eggs can infect children.",
     "Young animals are dewormed every few weeks, and then regularly as adults.",
     "Why does my new kitten need worming so often?", "My puppy has a round belly and looks thin. Could it be worms?",
     "Which gut worms do puppies often get from their mother, leaving them pot-bellied?",
     "Puppies and kittens often pick them up from their mother"),
    ("Tapeworms",
     "Tapeworms are flat worms that pets usually catch by swallowing infected fleas while grooming.",
     "Small segments like grains of rice may be seen near the tail or in the bedding.",
     "Treat the tapeworm and the fleas together, or it comes back.",
     "I found little white bits like rice under my cat's tail. What are they?", "How did my indoor cat get worms?",
     "Which flat worm do cats get from swallowing fleas, leaving rice-like segments?",
     "Pets catch it by swallowing fleas, and its pieces look like rice"),
    ("Ear mites",
     "Ear mites are tiny parasites that live in the ear canal, especially in kittens and young cats.",
     "They cause dark wax like coffee grounds, head shaking and scratching at the ears.",
     "They spread between pets in the home, so all of them are treated together.",
     "My kitten's ears are full of dark crumbly wax. What is it?", "Why is my cat shaking her head all the time?",
     "Which tiny parasites fill a kitten's ears with coffee-ground wax?",
     "They leave dark, crumbly wax inside the ear"),
    ("Lungworm",
     "Lungworm is a parasite that dogs catch by eating slugs and snails, or their slime on toys and bowls.",
     "It can cause coughing, tiredness and problems with blood clotting.",
     "Some monthly parasite treatments cover lungworm; ask your vet which one does.",
     "My dog likes to eat snails in the garden. Is that a problem?",
     "Why did the vet mention slugs when my dog started coughing?",
     "Which worm do dogs pick up from eating garden slugs and snails?",
     "Dogs catch it from slugs and snails and it can upset clotting"),
    ("Giardia",
     "Giardia is a single-celled parasite picked up from contaminated water or soil.",
     "It causes diarrhoea that comes and goes, often soft and smelly.",
     "Clean up faeces promptly and bathe the pet during treatment to stop reinfection.",
     "My dog has had on-and-off loose stools since a camping trip. What could cause that?", "What is giardia in dogs?",
     "Which single-celled parasite from dirty water causes on-and-off diarrhoea?",
     "It is a one-celled organism that causes recurring loose stools"),
    ("Ringworm",
     "Ringworm is a fungal skin infection, not a worm at all.",
     "It causes round patches of hair loss with scaly skin, and it can spread to people.",
     "Wash hands after handling an infected pet and clean bedding, since spores last a long time.",
     "My kitten has round bald patches and my son has an itchy red ring. Are they linked?", "Is ringworm really a worm?",
     "Which fungus, despite its name, leaves round bald patches on a pet's skin?",
     "It is a fungus rather than a worm and can spread to people"),
]

CONDITIONS = [
    ("Bloat",
     "Bloat, or gastric dilatation-volvulus, is when a dog's stomach fills with gas and may twist.",
     "Large, deep-chested breeds are most at risk. Signs are a swollen belly, restlessness and retching without bringing "
     "anything up.",
     "It is an emergency that needs surgery; go to a vet at once.",
     "My Great Dane keeps trying to vomit but nothing comes up. What should I do?", "What is GDV in dogs?",
     "A deep-chested dog retches without producing anything and its belly swells. What is the likely emergency?",
     "The stomach fills with gas and can twist on itself"),
    ("Urinary blockage",
     "A urinary blockage happens when a cat, usually a male, cannot pass urine because the urethra is plugged.",
     "He strains in the litter box and produces little or nothing, and may cry or lick his rear.",
     "This can be fatal within a day or two, so it needs a vet the same day.",
     "My male cat keeps going to the litter tray but nothing comes out. Is that urgent?",
     "Why are blocked bladders so dangerous in tomcats?",
     "A tomcat squats in the litter tray again and again with nothing coming out. What is happening?",
     "A plugged urethra stops a male cat from passing urine"),
    ("Heatstroke",
     "Heatstroke is a dangerous rise in body temperature, often in dogs left in hot cars or exercised in the heat.",
     "Flat-faced breeds are most at risk. Signs are heavy panting, drooling, weakness and collapse.",
     "Move the dog somewhere cool, wet it with cool rather than ice-cold water, and drive to a vet.",
     "What should I do if my dog collapses panting on a hot day?", "Why are pugs more likely to overheat?",
     "A pug collapses panting after a walk in the midday sun. What does this suggest?",
     "Cool, not icy, water and a vet visit are the first response"),
    ("Pyometra",
     "Pyometra is a serious infection of the uterus in unspayed female dogs and cats.",
     "It often appears a few weeks after a heat, with drinking more, tiredness and sometimes a discharge.",
     "Most cases need emergency surgery, and spaying prevents it.",
     "My older unspayed bitch is drinking loads since her last season. Should I worry?", "What is a womb infection in dogs?",
     "An unspayed bitch is thirsty and listless a month after her season. Which uterine infection is suspected?",
     "It is a womb infection that spaying prevents"),
    ("Hyperthyroidism",
     "Hyperthyroidism is an overactive thyroid gland, common in older cats.",
     "The cat loses weight despite a big appetite and may be restless, vocal and thirsty.",
     "A blood test confirms it, and tablets, a special diet or other treatments control it.",
     "My 14-year-old cat eats like a horse but is getting thinner. Why?", "What does an overactive thyroid do to a cat?",
     "An elderly cat eats greedily, grows thin and has an overactive gland in its neck. What condition is this?",
     "The cat eats more but still grows thinner"),
    ("Diabetes",
     "Diabetes is a condition where the body cannot control blood sugar, seen in both dogs and cats.",
     "Pets drink and urinate much more than usual and may lose weight while eating well.",
     "It is usually managed with insulin injections, a steady diet and regular checks.",
     "My dog is suddenly drinking a whole bowl of water at a time. What could it be?", "How is sugar diabetes treated in cats?",
     "Which blood sugar disorder is managed in pets with daily insulin injections?",
     "Daily insulin shots keep it under control"),
    ("Kidney disease",
     "Chronic kidney disease is a slow loss of kidney function, very common in older cats.",
     "Signs include drinking more, weight loss, poor appetite and bad breath.",
     "A kidney diet, plenty of water and regular blood tests help the cat live well for longer.",
     "Why does my elderly cat drink so much more than she used to?", "What diet helps a cat with failing kidneys?",
     "Which slow organ failure in elderly cats is helped by a special renal diet?",
     "Older cats lose this organ's function slowly over years"),
    ("Dental disease",
     "Dental disease is the build-up of tartar and inflamed gums, and most adult dogs and cats have some.",
     "Bad breath, red gums and chewing on one side are common signs.",
     "A vet can clean and check the teeth under anaesthesia, and daily brushing helps prevent it.",
     "My dog's breath smells awful. Could it be his teeth?", "Do cats really need their teeth cleaned?",
     "Which problem of tartar and sore gums shows up as bad breath in most adult pets?",
     "Tartar and gum inflammation cause bad breath"),
    ("Gut stasis",
     "Gut stasis is when a rabbit's digestive system slows down or stops.",
     "The rabbit stops eating and passing droppings, sits hunched and may grind its teeth.",
     "It is an emergency for rabbits, so call a vet within hours, not days; plenty of hay helps prevent it.",
     "My rabbit hasn't eaten or pooped since this morning. Is that an emergency?", "Why do rabbits need so much hay?",
     "A rabbit stops eating and produces no droppings. Which digestive emergency is this?",
     "A rabbit that stops eating and passing droppings needs help within hours"),
    ("Flystrike",
     "Flystrike happens when flies lay eggs on a rabbit's soiled fur and the maggots eat into the skin.",
     "It is most common in warm weather and in rabbits that cannot clean their rear end.",
     "Check the rabbit's rear twice a day in summer and keep the hutch clean.",
     "Why should I check my rabbit's bottom every day in summer?", "What are maggots doing on my rabbit?",
     "In summer, maggots hatch on a rabbit's dirty rump. What is this called?",
     "Maggots hatch on dirty fur and eat into the skin"),
]

CLINIC = [
    ("Spaying",
     "Spaying is the surgical removal of a female pet's ovaries, and usually the uterus as well.",
     "It stops heat cycles and unwanted litters and prevents pyometra.",
     "Your vet will advise the best age, which can differ by species and breed.",
     "What exactly happens when my female cat is spayed?", "Does spaying my dog have health benefits?",
     "What is the surgery that removes a female dog's ovaries so she no longer comes into season?",
     "It removes the ovaries of a female pet"),
    ("Castration",
     "Castration, often called neutering, is the removal of a male pet's testicles.",
     "It prevents unwanted litters and can reduce roaming, marking and some fighting.",
     "The operation is routine, and most pets go home the same day.",
     "Will neutering my tomcat stop him spraying?", "What is removed when a male dog is neutered?",
     "Which routine operation removes a tomcat's testicles to curb roaming?",
     "It removes the testicles of a male pet"),
    ("Microchipping",
     "Microchipping places a chip the size of a grain of rice under the skin, usually between the shoulder blades.",
     "A scanner reads its number, which links to the owner's details in a database.",
     "The chip only helps if you keep your contact details up to date with the registry.",
     "How does a microchip help if my dog gets lost?", "Where is the chip put in a cat?",
     "Which rice-grain implant lets a shelter scan a stray and find its owner?",
     "A scanner reads a number linked to the owner's details"),
    ("Fasting before anaesthesia",
     "Fasting before anaesthesia means no food for several hours before surgery, usually from the night before.",
     "An empty stomach lowers the risk of vomiting and breathing food into the lungs while asleep.",
     "Follow your clinic's timing; water is normally allowed until the morning.",
     "Why can't my dog have breakfast on the day of her operation?", "Can my cat drink water before surgery?",
     "What is the practice of holding back a pet's breakfast before it goes under an anaesthetic?",
     "Keeping the stomach empty protects the lungs during the operation"),
    ("Elizabethan collar",
     "An Elizabethan collar is a cone worn around the neck to stop a pet licking or chewing a wound or stitches.",
     "Most pets adjust within a day, though some need help with eating and drinking.",
     "Keep it on until the vet says the wound has healed, even if the pet seems fine.",
     "Does my dog really need to wear the cone after her surgery?", "My cat hates his cone. Can I take it off at night?",
     "Which cone worn around the neck keeps a pet from licking its stitches?",
     "It is a cone that keeps a pet's mouth off its wound"),
    ("Triage",
     "Triage is how a clinic sorts patients by how urgent their problem is, so the sickest are seen first.",
     "A nurse checks breathing, gum colour and pain as soon as a pet arrives.",
     "That is why a pet that arrives later may be seen before yours in a busy emergency room.",
     "Why was another dog seen before mine at the emergency clinic?", "What does the nurse check when we first arrive?",
     "What is the sorting of arriving patients by urgency at an emergency clinic called?",
     "The most urgent patients are seen first"),
    ("Body condition score",
     "A body condition score is a hands-on scale, often from 1 to 9, that rates how much fat a pet carries.",
     "At an ideal score you can feel the ribs easily and see a waist from above.",
     "Your vet can show you how to check at home and adjust food portions.",
     "How can I tell if my cat is overweight?", "What does it mean that my dog scored 7 out of 9?",
     "Which 1-to-9 scale lets a vet rate a pet's fat cover by feeling its ribs?",
     "It rates a pet's fat cover on a scale such as 1 to 9"),
    ("X-ray",
     "An X-ray, or radiograph, is an image that shows bones, the chest and many swallowed objects.",
     "Pets often need sedation to lie still, and staff wear protection from the radiation.",
     "Your vet may take X-rays after an injury or if a pet may have eaten something it shouldn't.",
     "How will the vet find the sock my dog swallowed?", "Why does my cat need sedation for pictures of her leg?",
     "Which imaging, also called a radiograph, shows a broken leg or a swallowed stone?",
     "It uses radiation to picture bones and swallowed objects"),
    ("Ultrasound",
     "An ultrasound scan uses sound waves to look at soft organs such as the heart, bladder and liver.",
     "It is painless; the fur is often clipped and a gel is applied to the skin.",
     "It is also used to confirm pregnancy and to guide needles for samples.",
     "Why did they shave my dog's belly for the scan?", "How can the vet tell if my cat is pregnant?",
     "Which scan bounces sound waves off a pet's bladder or heart?",
     "Sound waves picture the soft organs through gel on the skin"),
    ("Booster vaccination",
     "A booster vaccination is a repeat dose that keeps a pet's immunity strong.",
     "Puppies and kittens get a course of injections a few weeks apart, then boosters through adult life.",
     "Your vet plans which vaccines are due each year based on your pet's lifestyle.",
     "My dog had his puppy jabs. Why does he need more?", "How often do adult cats need vaccines?",
     "What is the repeat dose of a vaccine that keeps an adult pet protected?",
     "It tops up protection with another shot of the same vaccine"),
]

CATEGORIES = {"toxins": TOXINS, "infections": INFECTIONS, "parasites": PARASITES, "conditions": CONDITIONS,
              "clinic": CLINIC}
# Held-out facts that are partly true of another fact in the same category: never offered as each other's
# wrong choice (kidneys, red blood cells, spread by insects, weight loss with a good appetite, ...).
NOT_WITH = [("Grapes and raisins", "Antifreeze"), ("Grapes and raisins", "Lilies"), ("Antifreeze", "Lilies"),
            ("Onions and garlic", "Paracetamol"), ("Paracetamol", "Ibuprofen"), ("Parvovirus", "Feline panleukopenia"),
            ("Parvovirus", "Rabbit haemorrhagic disease"), ("Kennel cough", "Cat flu"),
            ("Feline leukaemia virus", "Cat flu"), ("Myxomatosis", "Rabbit haemorrhagic disease"),
            ("Rabies", "Leptospirosis"), ("Roundworms", "Ringworm"), ("Roundworms", "Ear mites"),
            ("Fleas", "Tapeworms"), ("Hyperthyroidism", "Diabetes"), ("Hyperthyroidism", "Kidney disease"),
            ("Spaying", "Castration")]
PROPER = {"X-ray", "Elizabethan collar"}  # keep their capitals inside a sentence

# Few-shot examples: general pet facts that neither the SFT file nor the test questions use.
DEV = [
    ("How many teeth does an adult dog usually have?", ["42", "30", "28", "20"], 0),
    ("Which pet's teeth keep growing for its whole life?", ["Cat", "Rabbit", "Dog", "Ferret"], 1),
    ("What is a healthy dog's usual body temperature?",
     ["About 35 to 36 degrees C", "About 41 to 42 degrees C", "About 38 to 39 degrees C", "About 33 to 34 degrees C"], 2),
    ("Why must cat food contain taurine?",
     ["It whitens the teeth", "It repels fleas", "It makes cats sleep", "Cats cannot make enough of it themselves"], 3),
]
QA_NAMES = ["Chocolate", "Xylitol", "Lilies", "Permethrin", "Antifreeze", "Ibuprofen", "Parvovirus", "Distemper",
            "Rabies", "Leptospirosis", "Myxomatosis", "Heartworm", "Fleas", "Ticks", "Lungworm", "Giardia", "Ringworm",
            "Pyometra", "Flystrike", "Triage"]

SYSTEM = "You are the front-desk assistant of a small veterinary clinic. Answer briefly and suggest a vet visit when unsure."
OPENERS = ["What should I know about {term}?", "Can you explain {term} to me?", "Tell me about {term}.",
           "What is {term}?", "I keep hearing about {term}. What is it?"]
FOLLOW_UPS = ["And what should I do about it?", "What can I do at home?", "How do I prevent it?"]
CLOSINGS = ["", "", "If in doubt, phone the clinic.", "Your vet can tell you more at the next check-up."]
SIGNS = {"toxins": "What happens if a pet is exposed to {term}?", "clinic": "How does {term} work at the clinic?"}
NAME_QUESTIONS = ["Which of these is true of {term}?", "Which statement about {term} is correct?",
                  "What best describes {term}?", "Which fact fits {term}?"]


def term(name: str) -> str:
    return name if name in PROPER else name.lower()


def facts():
    return [(category, *fact) for category, items in CATEGORIES.items() for fact in items]


def chat(*turns, system=False):
    roles = ["user", "assistant"] * len(turns)
    messages = [{"role": "system", "content": SYSTEM}] if system else []
    return {"messages": messages + [{"role": r, "content": c} for r, c in zip(roles, turns)]}


def sft_rows(rng: random.Random) -> list[dict]:
    rows = []
    for i, (category, name, teach, detail, advice, ask1, ask2, _cue, _fact) in enumerate(facts()):
        close = rng.choice(CLOSINGS)
        rows.append(chat(rng.choice(OPENERS).format(term=term(name)), f"{teach} {advice}"))
        rows.append(chat(ask1, f"{teach} {detail}", system=i % 5 == 0))
        rows.append(chat(ask2, f"{teach} {detail} {advice} {close}".strip()))
        signs = SIGNS.get(category, "What are the signs of {term}?").format(term=term(name))
        rows.append(chat(signs, f"{detail} {teach}",
                         rng.choice(FOLLOW_UPS), f"{advice} {close}".strip()))
    rng.shuffle(rows)
    return rows


def _positions(n: int, rng: random.Random) -> list[int]:
    positions = [i % 4 for i in range(n)]  # each position equally often (up to one)
    rng.shuffle(positions)
    return positions


def _excluded(a: str, b: str) -> bool:
    return (a, b) in NOT_WITH or (b, a) in NOT_WITH


def mc_rows(rng: random.Random) -> list[dict]:
    all_facts = facts()
    questions = []
    for category, name, *_, cue, fact in all_facts:
        peers = [f for f in all_facts if f[0] == category and f[1] != name]
        names = rng.sample([f[1] for f in peers], 3)
        facts_ok = [f[-1] for f in peers if not _excluded(name, f[1])]
        questions.append((cue, name, names))
        questions.append((rng.choice(NAME_QUESTIONS).format(term=term(name)), fact, rng.sample(facts_ok, 3)))
    rows = []
    for (question, right, wrong), position in zip(questions, _positions(len(questions), rng)):
        choices = list(wrong)
        rng.shuffle(choices)
        choices.insert(position, right)
        rows.append({"question": question, "choices": choices, "answer": position})
    return rows


def qa_rows() -> list[dict]:
    cues = {name: cue for _, name, *_, cue, _fact in facts()}
    return [{"question": cues[name], "answer": name} for name in QA_NAMES]


def normal_words(text: str) -> list[str]:
    return text.lower().translate(str.maketrans("", "", string.punctuation)).split()


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for v in value for s in strings(v)] if isinstance(value, list) else []


def grams(row) -> set[tuple[str, ...]]:
    words = normal_words("\n".join(strings(row)))
    return {tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def check(sft: list[dict], held_out: dict[str, list[dict]]) -> None:
    trained = set().union(*(grams(r) for r in sft))
    for label, rows in held_out.items():
        shared = [i for i, row in enumerate(rows, start=1) if grams(row) & trained]
        assert not shared, f"{label}: rows {shared} share a {NGRAM}-gram with sft.jsonl"
    for row in sft:
        for message in row["messages"]:
            limit = MAX_ASSISTANT_WORDS if message["role"] == "assistant" else MAX_USER_WORDS
            assert len(message["content"].split()) <= limit, message["content"]
    counts = [sum(r["answer"] == p for r in held_out["questions.jsonl"]) for p in range(4)]
    assert max(counts) - min(counts) <= 1, counts
    for _, name, *_, cue, _fact in facts():
        assert name.lower() not in cue.lower(), f"the cue names its own answer: {cue}"


def length_baselines(rows: list[dict]) -> tuple[float, float]:
    """Accuracy of always picking the longest, and the shortest, choice (chance is 0.25)."""
    pick = lambda row, f: row["choices"].index(f(row["choices"], key=len)) == row["answer"]  # noqa: E731
    return tuple(sum(pick(r, f) for r in rows) / len(rows) for f in (max, min))


def write(name: str, rows: list[dict]) -> None:
    text = "".join(json.dumps(row) + "\n" for row in rows)
    assert text.isascii(), name
    with open(os.path.join(OUT_DIR, name), "w") as fh:
        fh.write(text)


def main() -> None:
    sft = sft_rows(random.Random(SFT_SEED))
    held_out = {"questions.jsonl": mc_rows(random.Random(MC_SEED)),
                "questions_dev.jsonl": [{"question": q, "choices": c, "answer": a} for q, c, a in DEV],
                "qa.jsonl": qa_rows()}
    check(sft, held_out)
    write("sft.jsonl", sft)
    for name, rows in held_out.items():
        write(name, rows)
    print(f"sft.jsonl {len(sft)} rows; " + "; ".join(f"{n} {len(r)} rows" for n, r in held_out.items()))
    longest, shortest = length_baselines(held_out["questions.jsonl"])
    print(f"questions.jsonl: always the longest choice scores {longest:.3f}, always the shortest {shortest:.3f}")


if __name__ == "__main__":
    main()
